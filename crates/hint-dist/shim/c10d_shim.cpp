// A C face over the parts of libtorch's c10d that hint-dist uses: a TCPStore for the
// rendezvous and a ProcessGroupGloo for collectives on CPU tensors. tch exposes none of
// c10d; this file is compiled by hint-dist's build.rs against the libtorch headers that
// torch-sys found, and Gloo's headers from the system (Debian's libgloo-dev).
//
// Every function catches every C++ exception and reports it as a return code plus a
// message kept per thread (hd_last_error), so that nothing unwinds into Rust.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace {

thread_local std::string last_error;

template <typename F>
int guarded(F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}

std::vector<at::Tensor> tensors_of(at::Tensor** tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(*tensors[i]);
  }
  return out;
}

// op: 0 sum, 1 max, 2 min, 3 product.
c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 1:
      return c10d::ReduceOp::MAX;
    case 2:
      return c10d::ReduceOp::MIN;
    case 3:
      return c10d::ReduceOp::PRODUCT;
    default:
      return c10d::ReduceOp::SUM;
  }
}

}  // namespace

struct hd_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  std::chrono::milliseconds timeout;
};

extern "C" {

const char* hd_last_error() { return last_error.c_str(); }

// Joins (or, with is_server, serves) the TCPStore at host:port, then forms a Gloo group of
// `world` ranks under `prefix` (so one store can serve several groups). `timeout_ms`
// bounds the rendezvous and every collective.
int hd_gloo_new(const char* host, uint16_t port, bool is_server, int rank, int world,
                const char* prefix, const char* interface_host, int64_t timeout_ms,
                hd_group** out) {
  return guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = port;
    options.isServer = is_server;
    options.numWorkers = std::nullopt;
    options.waitWorkers = false;
    options.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
    gloo_options->devices.push_back(
        c10d::ProcessGroupGloo::createDeviceForHostname(std::string(interface_host)));
    gloo_options->threads = 2;
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, gloo_options);
    *out = new hd_group{store, group, timeout};
  });
}

void hd_free(hd_group* group) { delete group; }

// op: 0 sum, 1 max, 2 min, 3 product.
int hd_all_reduce(hd_group* group, at::Tensor** tensors, size_t n, int op) {
  return guarded([&] {
    auto list = tensors_of(tensors, n);
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    options.timeout = group->timeout;
    group->gloo->allreduce(list, options)->wait(group->timeout);
  });
}

// Sums (op as in hd_all_reduce) into rank `root`'s tensor; the others' are left undefined.
int hd_reduce(hd_group* group, at::Tensor* tensor, int root, int op) {
  return guarded([&] {
    std::vector<at::Tensor> list{*tensor};
    c10d::ReduceOptions options;
    options.rootRank = root;
    options.rootTensor = 0;
    options.reduceOp = reduce_op(op);
    options.timeout = group->timeout;
    group->gloo->reduce(list, options)->wait(group->timeout);
  });
}

int hd_broadcast(hd_group* group, at::Tensor** tensors, size_t n, int root) {
  return guarded([&] {
    auto list = tensors_of(tensors, n);
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = group->timeout;
    group->gloo->broadcast(list, options)->wait(group->timeout);
  });
}

// output: `world` times input's first dimension, rank r's input at slice r.
int hd_all_gather(hd_group* group, at::Tensor* output, at::Tensor* input) {
  return guarded([&] {
    c10d::AllgatherOptions options;
    options.timeout = group->timeout;
    group->gloo->_allgather_base(*output, *input, options)->wait(group->timeout);
  });
}

int hd_barrier(hd_group* group) {
  return guarded([&] {
    c10d::BarrierOptions options;
    options.timeout = group->timeout;
    group->gloo->barrier(options)->wait(group->timeout);
  });
}

// Store key/value, for start-up checks (configuration hash, versions).
int hd_store_set(hd_group* group, const char* key, const uint8_t* value, size_t len) {
  return guarded([&] {
    group->store->set(std::string(key), std::vector<uint8_t>(value, value + len));
  });
}

// Waits (up to the timeout) for `key`; copies at most `capacity` bytes, sets `*len` to the
// value's full length.
int hd_store_get(hd_group* group, const char* key, uint8_t* value, size_t capacity,
                 size_t* len) {
  return guarded([&] {
    auto bytes = group->store->get(std::string(key));
    *len = bytes.size();
    std::memcpy(value, bytes.data(), std::min(capacity, bytes.size()));
  });
}

}  // extern "C"
