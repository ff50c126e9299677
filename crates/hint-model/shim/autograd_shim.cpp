// What hint-model needs from libtorch that tch does not expose:
//
// 1. Rematerialisation (activation checkpointing, as torch.utils.checkpoint's reentrant
//    variant): a function of some tensors runs without recording a graph, and an autograd
//    node of our own recomputes it with a graph during the backward pass, from its saved
//    inputs and with the random generators as they were, then back-propagates through the
//    recomputation. The function is Rust code, called back through a pointer; the node
//    owns it and drops it when the graph is freed.
// 2. For rematerialisation that keeps the weight products (t5x's `minimal` policy): a
//    product `input · weightᵀ` whose output was computed in the first run and kept, given
//    the gradient node of that product without computing it again.
// 3. The device caching allocator's statistics (peak allocated and reserved bytes), read
//    through c10's device-generic interface, so that no CUDA header is needed.
// 4. Inference products through oneDNN with the weight reordered once into its blocked
//    layout (the `mkldnn::_reorder_linear_weight` / `mkldnn::_linear_pointwise` operators
//    that Inductor's CPU freezing uses), and a tensor's version counter, which tells a
//    reordered copy that its weight was changed in place.
//
// Every entry point catches every C++ exception and reports it as a return code plus a
// message kept per thread (hm_last_error), so that nothing unwinds into Rust. A failing
// Rust callback inside the backward pass is turned into a C++ exception there, which
// autograd reports as the backward call's error.

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/Allocator.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <atomic>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "guarded.h"

namespace {

thread_local std::string last_error;

using hm::guarded;

// Rust's side: `call` runs the function on `n` input tensors and hands each output to
// `push(sink, tensor)`; it returns 0, or -1 with a message written through `fail`.
using hm_push_fn = void (*)(void* sink, at::Tensor* tensor);
using hm_call_fn = int (*)(void* function, at::Tensor** inputs, size_t n, void* sink,
                          hm_push_fn push);
using hm_drop_fn = void (*)(void* function);

struct RustFunction {
  void* function;
  hm_call_fn call;
  hm_drop_fn drop;
  RustFunction(void* f, hm_call_fn c, hm_drop_fn d) : function(f), call(c), drop(d) {}
  RustFunction(const RustFunction&) = delete;
  RustFunction& operator=(const RustFunction&) = delete;
  ~RustFunction() { drop(function); }

  std::vector<at::Tensor> operator()(std::vector<at::Tensor>& inputs) const {
    std::vector<at::Tensor*> pointers;
    pointers.reserve(inputs.size());
    for (auto& t : inputs) {
      pointers.push_back(&t);
    }
    std::vector<at::Tensor> outputs;
    auto push = [](void* sink, at::Tensor* tensor) {
      static_cast<std::vector<at::Tensor>*>(sink)->push_back(*tensor);
    };
    if (call(function, pointers.data(), pointers.size(), &outputs, push) != 0) {
      throw std::runtime_error("the rematerialised function failed: " + last_error);
    }
    return outputs;
  }
};

// The random generators a function may draw from (dropout): the CPU's and, for a CUDA
// input, that device's. Saved before the first run, restored for the recomputation.
struct RngState {
  at::Tensor cpu;
  std::optional<std::pair<c10::Device, at::Tensor>> device;

  static at::Tensor state_of(at::Generator generator) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    return generator.get_state();
  }

  static void set(at::Generator generator, const at::Tensor& state) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  }

  static RngState capture(const std::vector<at::Tensor>& inputs) {
    RngState state;
    state.cpu = state_of(at::detail::getDefaultCPUGenerator());
    for (const auto& t : inputs) {
      if (t.defined() && t.is_cuda()) {
        state.device = std::make_pair(
            t.device(), state_of(at::globalContext().defaultGenerator(t.device())));
        break;
      }
    }
    return state;
  }

  void restore() const {
    set(at::detail::getDefaultCPUGenerator(), cpu);
    if (device) {
      set(at::globalContext().defaultGenerator(device->first), device->second);
    }
  }
};

struct RematerialisedBackward : public torch::autograd::Node {
  std::shared_ptr<RustFunction> function;
  std::vector<at::Tensor> inputs;
  std::vector<bool> needs_grad;
  RngState rng;

  std::string name() const override { return "RematerialisedBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(!inputs.empty() || needs_grad.empty(),
                "a rematerialised function's inputs were freed: was backward called twice?");
    std::vector<at::Tensor> detached;
    detached.reserve(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      auto d = inputs[i].defined() ? inputs[i].detach() : at::Tensor();
      if (needs_grad[i]) {
        d.requires_grad_(true);
      }
      detached.push_back(d);
    }
    // The recomputation draws the same dropout masks as the first run; afterwards the
    // generators continue from where they were.
    auto now = RngState::capture(inputs);
    rng.restore();
    std::vector<at::Tensor> outputs;
    try {
      at::AutoGradMode enable(true);
      outputs = (*function)(detached);
    } catch (...) {
      now.restore();
      throw;
    }
    now.restore();
    std::vector<at::Tensor> roots;
    std::vector<at::Tensor> root_grads;
    for (size_t i = 0; i < outputs.size() && i < grads.size(); ++i) {
      if (grads[i].defined() && outputs[i].defined() && outputs[i].requires_grad()) {
        roots.push_back(outputs[i]);
        root_grads.push_back(grads[i]);
      }
    }
    if (!roots.empty()) {
      // Parameters (leaves) accumulate their gradients here; the detached inputs collect
      // theirs, which this node returns to the rest of the graph.
      torch::autograd::backward(roots, root_grads);
    }
    torch::autograd::variable_list result;
    result.reserve(detached.size());
    for (size_t i = 0; i < detached.size(); ++i) {
      result.push_back(needs_grad[i] ? detached[i].grad() : at::Tensor());
    }
    return result;
  }

  void release_variables() override {
    inputs.clear();
    inputs.shrink_to_fit();
  }
};

// The backward pass of `input · weightᵀ` (a bias-free linear map), for an output that was
// computed earlier and kept: the gradients of a linear map, from its saved operands.
struct KeptProductBackward : public torch::autograd::Node {
  at::Tensor input;
  at::Tensor weight;
  bool input_needs_grad = false;
  bool weight_needs_grad = false;

  std::string name() const override { return "KeptProductBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(input.defined() && weight.defined(),
                "a kept product's operands were freed: was backward called twice?");
    const auto& grad = grads[0];
    at::Tensor input_grad;
    at::Tensor weight_grad;
    if (grad.defined() && input_needs_grad) {
      input_grad = grad.matmul(weight);
    }
    if (grad.defined() && weight_needs_grad) {
      weight_grad = grad.reshape({-1, grad.size(-1)})
                        .t()
                        .mm(input.reshape({-1, input.size(-1)}));
    }
    return {input_grad, weight_grad};
  }

  void release_variables() override {
    input.reset();
    weight.reset();
  }
};

// Bytes of CPU tensors, counted from libtorch's allocation reports: its CPU allocator
// tells a thread's memory reporter of every allocation and release once the thread has
// one (the hook PyTorch's profiler uses), so this counts what tensors hold, as CUDA's
// allocator statistics do, where the resident set also counts the allocator's caches.
struct CpuTensorBytes : public c10::MemoryReportingInfoBase {
  std::atomic<int64_t> current{0};
  std::atomic<int64_t> peak{0};

  void reportMemoryUsage(void*, int64_t size, size_t, size_t, c10::Device device) override {
    if (device.type() != c10::DeviceType::CPU) {
      return;
    }
    auto now = current.fetch_add(size) + size;
    auto seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }

  bool memoryProfilingEnabled() const override { return true; }
};

std::shared_ptr<CpuTensorBytes>& cpu_tensor_bytes() {
  static auto counter = std::make_shared<CpuTensorBytes>();
  return counter;
}

}  // namespace

extern "C" {

// Counts the CPU tensors this thread allocates from now on (and their releases).
int hm_count_cpu_tensors() {
  return guarded([&] {
    if (c10::ThreadLocalDebugInfo::get(c10::DebugInfoKind::PROFILER_STATE) == nullptr) {
      c10::ThreadLocalDebugInfo::_push(c10::DebugInfoKind::PROFILER_STATE, cpu_tensor_bytes());
    }
  });
}

// Whether this thread counts its CPU tensors.
bool hm_counts_cpu_tensors() {
  return c10::ThreadLocalDebugInfo::get(c10::DebugInfoKind::PROFILER_STATE) ==
         cpu_tensor_bytes().get();
}

// Bytes of counted CPU tensors now and at their peak since the last reset.
void hm_cpu_tensor_bytes(int64_t* current, int64_t* peak) {
  *current = cpu_tensor_bytes()->current.load();
  *peak = cpu_tensor_bytes()->peak.load();
}

void hm_reset_cpu_tensor_peak() {
  auto& counter = cpu_tensor_bytes();
  counter->peak.store(counter->current.load());
}

const char* hm_last_error() { return last_error.c_str(); }

// Sets this thread's error message (a Rust callback's failure).
void hm_set_error(const char* message) { last_error = message; }

// Runs `function` on `inputs` without recording a graph and gives its floating-point
// outputs a node that recomputes it in the backward pass (with grad mode off, it just runs
// it). Takes ownership of `function` (dropped through `drop`, on failure too).
int hm_rematerialise(at::Tensor** inputs, size_t n, void* function, hm_call_fn call,
                     hm_drop_fn drop, void* sink, hm_push_fn push) {
  auto owned = std::make_shared<RustFunction>(function, call, drop);
  return guarded([&] {
    std::vector<at::Tensor> list;
    list.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      list.push_back(*inputs[i]);
    }
    if (!at::GradMode::is_enabled()) {
      for (auto& out : (*owned)(list)) {
        push(sink, &out);
      }
      return;
    }
    auto rng = RngState::capture(list);
    std::vector<at::Tensor> outputs;
    {
      at::NoGradGuard no_grad;
      outputs = (*owned)(list);
    }
    // An output that is an input (or a view of one) must not take the input's place in the
    // graph: it gets storage of its own.
    for (auto& out : outputs) {
      for (const auto& in : list) {
        if (out.defined() && in.defined() && out.is_alias_of(in)) {
          out = out.clone();
          break;
        }
      }
    }
    auto node = c10::make_intrusive<RematerialisedBackward>();
    node->set_next_edges(torch::autograd::collect_next_edges(list));
    node->function = owned;
    node->rng = std::move(rng);
    for (const auto& t : list) {
      node->needs_grad.push_back(t.defined() && t.requires_grad());
    }
    node->inputs = std::move(list);
    for (auto& out : outputs) {
      if (out.defined() && at::isFloatingType(out.scalar_type())) {
        torch::autograd::set_history(out, node);
      }
      push(sink, &out);
    }
  });
}

// Whether this thread records a graph (libtorch's grad mode; tch keeps its reader private).
int hm_grad_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }

// Drops `tensor`'s gradient (PyTorch's `zero_grad(set_to_none=True)`): the next backward
// pass then takes its incoming gradient as the buffer instead of adding it into a zeroed
// one — no zeroing pass, no addition pass, no temporary.
int hm_release_grad(at::Tensor* tensor) {
  return guarded([&] { tensor->mutable_grad().reset(); });
}

// `kept`, the value of `input · weightᵀ` computed earlier, as that product's output: a new
// tensor sharing its storage whose gradient node is the linear map's (none when neither
// operand needs a gradient or grad mode is off).
int hm_kept_product(at::Tensor* input, at::Tensor* weight, at::Tensor* kept, at::Tensor** out) {
  return guarded([&] {
    TORCH_CHECK(kept->size(-1) == weight->size(0) && input->size(-1) == weight->size(1) &&
                    kept->sizes().slice(0, kept->dim() - 1) ==
                        input->sizes().slice(0, input->dim() - 1),
                "a kept product ", kept->sizes(), " does not match its operands ",
                input->sizes(), " and ", weight->sizes(),
                ": the recomputation ran other products than the first run");
    auto result = kept->detach();
    bool input_grad = input->requires_grad();
    bool weight_grad = weight->requires_grad();
    if (at::GradMode::is_enabled() && (input_grad || weight_grad)) {
      auto node = c10::make_intrusive<KeptProductBackward>();
      node->set_next_edges(torch::autograd::collect_next_edges(*input, *weight));
      node->input = *input;
      node->weight = *weight;
      node->input_needs_grad = input_grad;
      node->weight_needs_grad = weight_grad;
      torch::autograd::set_history(result, node);
    }
    *out = new at::Tensor(std::move(result));
  });
}

// The caching allocator's statistics of a device (`device_type` as c10::DeviceType, e.g.
// 1 for CUDA): bytes allocated and reserved now and at their peak since the last reset.
int hm_device_memory(int device_type, int index, int64_t* allocated, int64_t* peak_allocated,
                     int64_t* reserved, int64_t* peak_reserved) {
  return guarded([&] {
    auto* allocator = c10::getDeviceAllocator(static_cast<c10::DeviceType>(device_type));
    auto stats = allocator->getDeviceStats(static_cast<c10::DeviceIndex>(index));
    auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[aggregate].current;
    *peak_allocated = stats.allocated_bytes[aggregate].peak;
    *reserved = stats.reserved_bytes[aggregate].current;
    *peak_reserved = stats.reserved_bytes[aggregate].peak;
  });
}

int hm_reset_peak_device_memory(int device_type, int index) {
  return guarded([&] {
    c10::getDeviceAllocator(static_cast<c10::DeviceType>(device_type))
        ->resetPeakStats(static_cast<c10::DeviceIndex>(index));
  });
}

// Whether this libtorch was built with oneDNN and its CPU supports it.
int hm_mkldnn_available() { return at::hasMKLDNN() ? 1 : 0; }

// The version counter of `tensor` (incremented by every in-place change).
int hm_tensor_version(at::Tensor* tensor, int64_t* version) {
  return guarded([&] { *version = static_cast<int64_t>(tensor->_version()); });
}

// `weight [out, in]` (f32 or bf16, CPU) reordered into oneDNN's blocked layout for
// `hm_packed_linear`: an opaque tensor that only that product reads.
int hm_packed_weight(at::Tensor* weight, at::Tensor** out) {
  return guarded([&] {
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow(
        "mkldnn::_reorder_linear_weight", "");
    torch::jit::Stack stack;
    stack.emplace_back(weight->contiguous());
    stack.emplace_back(c10::IValue());  // no batch size hint: the layout serves any
    op.callBoxed(&stack);
    *out = new at::Tensor(stack.back().toTensor());
  });
}

// `input [.., in] · weightᵀ` with `packed` from `hm_packed_weight` (no bias, no autograd:
// callers use it only where no graph is recorded).
int hm_packed_linear(at::Tensor* input, at::Tensor* packed, at::Tensor** out) {
  return guarded([&] {
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow(
        "mkldnn::_linear_pointwise", "");
    torch::jit::Stack stack;
    stack.emplace_back(input->contiguous());
    stack.emplace_back(*packed);
    stack.emplace_back(c10::IValue());  // bias
    stack.emplace_back(std::string("none"));
    stack.emplace_back(c10::List<std::optional<at::Scalar>>());
    stack.emplace_back(c10::IValue());  // algorithm
    op.callBoxed(&stack);
    *out = new at::Tensor(stack.back().toTensor());
  });
}

}  // extern "C"
