// A C face over the parts of libtorch's c10d that hint-dist uses: a TCPStore for the
// rendezvous, a c10d::ProcessGroup with ProcessGroupGloo for CPU tensors (and, built with
// HINT_DIST_NCCL, ProcessGroupNCCL for CUDA tensors), and the c10d::Reducer that PyTorch's
// DistributedDataParallel runs on: it sums gradients in buckets from autograd hooks, while
// the backward pass is still computing the rest. tch exposes none of c10d; this file is
// compiled by hint-dist's build.rs against the libtorch headers that torch-sys found, and
// Gloo's headers from the system (Debian's libgloo-dev).
//
// Every function catches every C++ exception and reports it as a return code plus a
// message kept per thread (hd_last_error), so that nothing unwinds into Rust.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/debug.h>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef HINT_DIST_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstring>
#include <string>
#include <unordered_map>
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

// Sums each gradient bucket over the ranks (DDP's default divides by the world size:
// hint's loss is a sum over the global batch's tokens, so the gradients are summed), or,
// for a sharded optimizer, reduces each bucket to the rank that owns its parameters.
class SumGradients
    : public c10d::CppCommHookInterface<c10::intrusive_ptr<c10d::ProcessGroup>> {
 public:
  SumGradients(const c10::intrusive_ptr<c10d::ProcessGroup>& group,
               std::vector<int> bucket_owners)
      : CppCommHookInterface(group), bucket_owners_(std::move(bucket_owners)) {}

  c10::intrusive_ptr<c10::ivalue::Future> runHook(c10d::GradBucket& bucket) override {
    std::vector<at::Tensor> tensors{bucket.getBufferRef()};
    auto backend = state_->getBackend(tensors[0].device().type());
    if (bucket_owners_.empty()) {
      c10d::AllreduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      return backend->allreduce(tensors, options)->getFuture();
    }
    c10d::ReduceOptions options;
    options.rootRank = bucket_owners_.at(bucket.getIndex());
    options.reduceOp = c10d::ReduceOp::SUM;
    return backend->reduce(tensors, options)->getFuture();
  }

 private:
  std::vector<int> bucket_owners_;
};

}  // namespace

struct hd_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  std::chrono::milliseconds timeout;

  // The backend for a tensor's device: Gloo for CPU, NCCL (when built and formed) for CUDA.
  c10::intrusive_ptr<c10d::Backend> backend_for(const at::Tensor& tensor) {
    auto type = tensor.device().type();
    if (!group->hasBackendForDeviceType(type)) {
      throw std::runtime_error(
          std::string("no process-group backend for ") + c10::DeviceTypeName(type) +
          " tensors (CUDA tensors need hint-dist built with the `nccl` feature and a "
          "group formed on a CUDA device)");
    }
    return group->getBackend(type);
  }
};

struct hd_reducer {
  std::unique_ptr<c10d::Reducer> reducer;
  bool rebuild;
};

extern "C" {

const char* hd_last_error() { return last_error.c_str(); }

// Whether this shim was built with NCCL.
bool hd_has_nccl() {
#ifdef HINT_DIST_NCCL
  return true;
#else
  return false;
#endif
}

// Joins (or, with is_server, serves) the TCPStore at host:port, then forms a group of
// `world` ranks under `prefix` (so one store can serve several groups): Gloo for CPU
// tensors, and with `nccl` also NCCL for CUDA tensors. `timeout_ms` bounds the rendezvous
// and every collective.
int hd_group_new(const char* host, uint16_t port, bool is_server, int rank, int world,
                 const char* prefix, const char* interface_host, int64_t timeout_ms,
                 bool nccl, hd_group** out) {
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
    auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, world);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
    gloo_options->devices.push_back(
        c10d::ProcessGroupGloo::createDeviceForHostname(std::string(interface_host)));
    gloo_options->threads = 2;
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("gloo", store), rank, world, gloo_options);
    group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
    group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    if (nccl) {
#ifdef HINT_DIST_NCCL
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = timeout;
      auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          c10::make_intrusive<c10d::PrefixStore>("nccl", store), rank, world, nccl_options);
      group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL,
                        backend);
#else
      throw std::runtime_error(
          "NCCL was asked for, but hint-dist was built without the `nccl` feature");
#endif
    }
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
    group->backend_for(list.at(0))->allreduce(list, options)->wait(group->timeout);
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
    group->backend_for(*tensor)->reduce(list, options)->wait(group->timeout);
  });
}

int hd_broadcast(hd_group* group, at::Tensor** tensors, size_t n, int root) {
  return guarded([&] {
    auto list = tensors_of(tensors, n);
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = group->timeout;
    group->backend_for(list.at(0))->broadcast(list, options)->wait(group->timeout);
  });
}

// output: `world` times input's first dimension, rank r's input at slice r.
int hd_all_gather(hd_group* group, at::Tensor* output, at::Tensor* input) {
  return guarded([&] {
    c10d::AllgatherOptions options;
    options.timeout = group->timeout;
    group->backend_for(*input)
        ->_allgather_base(*output, *input, options)
        ->wait(group->timeout);
  });
}

// output: input's first dimension divided by `world`; rank r gets slice r of the sum.
int hd_reduce_scatter(hd_group* group, at::Tensor* output, at::Tensor* input, int op) {
  return guarded([&] {
    c10d::ReduceScatterOptions options;
    options.reduceOp = reduce_op(op);
    options.timeout = group->timeout;
    group->backend_for(*input)
        ->_reduce_scatter_base(*output, *input, options)
        ->wait(group->timeout);
  });
}

int hd_barrier(hd_group* group) {
  return guarded([&] {
    c10d::BarrierOptions options;
    options.timeout = group->timeout;
    group->group->getDefaultBackend()->barrier(options)->wait(group->timeout);
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

// A reducer over `n` parameters (leaf tensors that require grad), given in bucket order:
// bucket b holds the next `bucket_lengths[b]` of them. With `bucket_owners` (one rank per
// bucket) each bucket is reduced to its owner, else summed onto every rank. Gradients
// become views of the buckets (no copies). Unless owned, the buckets are rebuilt once, in
// the order the gradients became ready in the first backward pass (rank 0's order), so
// that communication starts while the backward pass computes the rest, as in DDP.
int hd_reducer_new(hd_group* group, at::Tensor** params, const char** names, size_t n,
                   const size_t* bucket_lengths, const int* bucket_owners, size_t buckets,
                   int64_t bucket_bytes, int64_t first_bucket_bytes, hd_reducer** out) {
  return guarded([&] {
    auto list = tensors_of(params, n);
    std::vector<std::vector<size_t>> indices;
    size_t next = 0;
    for (size_t b = 0; b < buckets; ++b) {
      std::vector<size_t> bucket;
      for (size_t i = 0; i < bucket_lengths[b]; ++i) {
        bucket.push_back(next++);
      }
      indices.push_back(std::move(bucket));
    }
    if (next != n) {
      throw std::runtime_error("bucket lengths do not add up to the parameters");
    }
    std::unordered_map<size_t, std::string> param_names;
    for (size_t i = 0; i < n; ++i) {
      param_names[i] = names[i];
    }
    std::vector<int> owners;
    if (bucket_owners != nullptr) {
      owners.assign(bucket_owners, bucket_owners + buckets);
    }
    // The Reducer reads c10d's debug level once, here: at Detail, a reduction that cannot
    // finish lists the indices of the parameters that received no gradient (Info does not;
    // the level only adds a set insertion per gradient). The process's level is restored.
    auto level = c10d::debug_level();
    c10d::setDebugLevel(c10d::DebugLevel::Detail);
    struct Restore {
      c10d::DebugLevel level;
      ~Restore() { c10d::setDebugLevel(level); }
    } restore{level};
    auto reducer = std::make_unique<c10d::Reducer>(
        list, std::move(indices), group->group, std::vector<bool>(n, false), bucket_bytes,
        /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/true,
        std::move(param_names), first_bucket_bytes,
        /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false,
        std::vector<int64_t>{});
    reducer->register_comm_hook(std::make_unique<SumGradients>(group->group, owners));
    *out = new hd_reducer{std::move(reducer), owners.empty()};
  });
}

void hd_reducer_free(hd_reducer* reducer) { delete reducer; }

// Before the backward pass whose gradients are to be reduced (the last microbatch's):
// rebuilds the buckets once gradient order is known, then arms the hooks.
int hd_reducer_prepare(hd_reducer* reducer) {
  return guarded([&] {
    if (reducer->rebuild) {
      reducer->reducer->rebuild_buckets();
    }
    reducer->reducer->prepare_for_backward({});
  });
}

// After that backward pass: fails, naming the parameters, when a reduction did not finish
// (a parameter that received no gradient).
int hd_reducer_check(hd_reducer* reducer) {
  return guarded([&] { reducer->reducer->check_finalized(); });
}

}  // extern "C"
