// The shim's error convention, shared by its files: every entry point runs its body
// through `guarded`, which catches every C++ exception and returns -1 with the message
// kept per thread (read back through hm_last_error), so that nothing unwinds into Rust.
#pragma once

#include <exception>

extern "C" void hm_set_error(const char* message);

// Keeping the message can itself throw (an allocation): it must not unwind either.
inline void hm_keep_error(const char* message) noexcept {
  try {
    hm_set_error(message);
  } catch (...) {
  }
}

namespace hm {

template <typename F>
int guarded(F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    hm_keep_error(e.what());
  } catch (...) {
    hm_keep_error("unknown C++ exception");
  }
  return -1;
}

}  // namespace hm
