// The shim's error convention, shared by its files: every entry point runs its body
// through `guarded`, which catches every C++ exception and returns -1 with the message
// kept per thread (read back through hm_last_error), so that nothing unwinds into Rust.
#pragma once

#include <exception>

extern "C" void hm_set_error(const char* message);

namespace hm {

template <typename F>
int guarded(F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    hm_set_error(e.what());
  } catch (...) {
    hm_set_error("unknown C++ exception");
  }
  return -1;
}

}  // namespace hm
