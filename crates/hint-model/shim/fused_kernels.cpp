// Fused CPU kernels for T5's element-wise hot spots, each an autograd function of its own
// with a hand-written backward pass:
//
// 1. The RMS norm. Composed of libtorch operators it is about ten passes over the
//    activations forward and twenty backward (the f32 copy, square, mean, rsqrt, products,
//    casts and their gradients), and it saves an f32 copy of its input for the backward
//    pass. Here it is one pass forward, one backward, and it saves only the input and one
//    f32 number per row.
// 2. The gated activation of T5 v1.1's feed-forward, `act(gate) * linear`, read from the
//    one product that computes both halves (see `fused_linear`): one pass forward, one
//    backward writing the gradient of the whole product at once (libtorch's composition
//    also joins the two halves' gradients with a copy), saving nothing but that product.
// 3. What the loss needs of each row of logits: log Σ e^x, the target's logit and Σ x
//    (for label smoothing). libtorch's composition copies the `[B, T, V]` logits to f32,
//    takes their log-softmax, gathers twice, and backward scatters into two zeroed f32
//    tensors, adds them, runs the log-softmax's backward and casts back: about a gigabyte
//    of memory traffic at T5's 32k vocabulary and 512 target tokens. Here: the logits read
//    twice forward (once from cache), read and written once backward, in their own dtype.
//
// In a bf16 step on a 2-core CPU these operators took about a quarter of the time, most
// of it passes over memory and OpenMP barriers between them.
//
// The arithmetic is libtorch's, rounding included: statistics and activations in f32,
// every intermediate libtorch's composition rounds to the compute dtype rounded here at
// the same point, so bf16 results agree with the composition to one bf16 rounding and f32
// ones to a few f32 ulps (a different summation order; the exp is our own, ~1 ulp, and
// the tanh built on it is within ~2e-6 relative, whose error enters the activations only
// as 1 + t and 1 - t²). One exception: the norm weight's gradient is summed in f32, where
// the composition rounds each product to bf16 first. That sum runs over fixed blocks of
// rows, added in a fixed order: on one machine the same at every thread count, which
// resumed runs rely on (the vector width of the machine's clone sets the lanes).
//
// The loops are plain C++ that the compiler vectorises; on x86-64 each is compiled for
// AVX-512 and AVX2 too and chosen at load time (GCC's target_clones).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "guarded.h"

namespace {

// target_clones needs GCC 12 (x86-64-vN levels) and glibc's ifunc.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && \
    defined(__GLIBC__)
#define HM_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HM_VECTOR_CLONES
#endif
#define HM_INLINE inline __attribute__((always_inline))

// ---- element types -------------------------------------------------------------------

struct F32 {
  using Storage = float;
  static HM_INLINE float load(float v) { return v; }
  static HM_INLINE float store(float v) { return v; }
  static HM_INLINE float round(float v) { return v; }
};

// bf16 as libtorch's c10::BFloat16: the upper half of an f32, rounded to nearest even,
// NaN kept a (quiet) NaN.
struct BF16 {
  using Storage = uint16_t;
  static HM_INLINE float load(uint16_t v) {
    uint32_t bits = static_cast<uint32_t>(v) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  static HM_INLINE uint16_t store(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    return f != f ? static_cast<uint16_t>(0x7fc0) : static_cast<uint16_t>(rounded);
  }
  static HM_INLINE float round(float v) { return load(store(v)); }
};

// ---- activations ---------------------------------------------------------------------

// e^x for x ≤ 88 (Cephes' expf: range reduction by ln 2, a degree-6 polynomial, the
// exponent set through the bits), branch-free so that it vectorises.
HM_INLINE float exp_small(float x) {
  // Plain comparisons and the 1.5·2²³ rounding trick: std::fmax and std::floor keep GCC
  // from vectorising the loop (their strict semantics).
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  float shifted = x * 1.44269504088896341f + 12582912.0f;
  float n = shifted - 12582912.0f;
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // The exponent from the shifted sum's bits (no float-to-int conversion, which a NaN
  // would make undefined): its low bits hold n + 2²², masked to the 9 the scale needs.
  uint32_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof shifted_bits);
  uint32_t bits = ((shifted_bits + 127u) & 0x1ffu) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// tanh from e^{2|u|}, with its odd Taylor series near 0 where 1 - 2/(e^{2|u|}+1) cancels
// (just above the switch it loses ~4 bits: ~2e-6 relative).
HM_INLINE float tanh_approx(float u) {
  float a = std::fabs(u);
  float far = 1.0f - 2.0f / (exp_small(2.0f * a) + 1.0f);
  float a2 = a * a;
  float near = a * (1.0f + a2 * (-1.0f / 3 + a2 * (2.0f / 15 + a2 * (-17.0f / 315))));
  return std::copysign(a < 0.0625f ? near : far, u);
}

constexpr float kGeluBeta = 0.7978845608028654f;  // √(2/π)
constexpr float kGeluKappa = 0.044715f;

// The activations, in libtorch's expressions (`gelu(approximate="tanh")` and `silu`, and
// their backward formulas): `value` alone for the forward pass, `both` (the value and the
// derivative from one tanh or exp) for the backward pass.
struct GeluTanh {
  static HM_INLINE float tanh_inner(float x) {
    float x_cube = x * x * x;
    return tanh_approx(kGeluBeta * (x + kGeluKappa * x_cube));
  }
  static HM_INLINE float value(float x) { return 0.5f * x * (1.0f + tanh_inner(x)); }
  static HM_INLINE void both(float x, float& value, float& derivative) {
    float x_sq = x * x;
    float t = tanh_inner(x);
    float left = 0.5f * x;
    float right = 1.0f + t;
    value = left * right;
    float left_derivative = 0.5f * right;
    float tanh_derivative = 1.0f - t * t;
    float inner_derivative = kGeluBeta * (1.0f + 3.0f * kGeluKappa * x_sq);
    derivative = left_derivative + left * tanh_derivative * inner_derivative;
  }
};

struct Silu {
  static HM_INLINE float value(float x) { return x / (1.0f + exp_small(-x)); }
  static HM_INLINE void both(float x, float& value, float& derivative) {
    float denominator = 1.0f + exp_small(-x);
    float sigmoid = 1.0f / denominator;
    value = x / denominator;
    derivative = sigmoid * (1.0f + x * (1.0f - sigmoid));
  }
};

// ---- row kernels ---------------------------------------------------------------------

// One row of the RMS norm: returns 1/√(mean(x²) + ε) and writes
// `y = w ⊙ round(x · r)` (w already in the compute dtype).
template <typename T>
HM_INLINE float rms_forward_row(const typename T::Storage* x, const typename T::Storage* w,
                                typename T::Storage* y, int64_t d, float eps) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < d; ++j) {
    float v = T::load(x[j]);
    sum += v * v;
  }
  float r = 1.0f / std::sqrt(sum / static_cast<float>(d) + eps);
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) {
    y[j] = T::store(T::load(w[j]) * T::round(T::load(x[j]) * r));
  }
  return r;
}

// Its gradient: `dx` for the row, the weight's gradient added into `dw` (f32). With
// n = round(x·r) and dn = round(dy ⊙ w): dx = r·dn − x · r³ · Σ(dn ⊙ x) / d.
template <typename T>
HM_INLINE void rms_backward_row(const typename T::Storage* x, const typename T::Storage* w,
                                const typename T::Storage* dy, float r, typename T::Storage* dx,
                                float* dw, int64_t d) {
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < d; ++j) {
    float xj = T::load(x[j]);
    float g = T::load(dy[j]);
    dw[j] += g * T::round(xj * r);
    dot += T::round(g * T::load(w[j])) * xj;
  }
  float coefficient = r * r * r * dot / static_cast<float>(d);
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) {
    float dn = T::round(T::load(dy[j]) * T::load(w[j]));
    dx[j] = T::store(r * dn - T::load(x[j]) * coefficient);
  }
}

// `h = round(act(gate)) · linear` over `n` elements of one row.
template <typename T, typename Act>
HM_INLINE void gated_forward_span(const typename T::Storage* gate,
                                  const typename T::Storage* linear, typename T::Storage* h,
                                  int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    h[j] = T::store(T::round(Act::value(T::load(gate[j]))) * T::load(linear[j]));
  }
}

// Its gradient: d_linear = dh · round(act(gate)), d_gate = round(dh · linear) · act'(gate).
template <typename T, typename Act>
HM_INLINE void gated_backward_span(const typename T::Storage* gate,
                                   const typename T::Storage* linear,
                                   const typename T::Storage* dh, typename T::Storage* d_gate,
                                   typename T::Storage* d_linear, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    float value, derivative;
    Act::both(T::load(gate[j]), value, derivative);
    float g = T::load(dh[j]);
    d_linear[j] = T::store(g * T::round(value));
    d_gate[j] = T::store(T::round(g * T::load(linear[j])) * derivative);
  }
}

// One row of logits `x [v]`: writes log Σ e^x (from the row's maximum, so nothing
// overflows), x[target] and Σ x, all in f32 — what the loss needs of a row, read twice
// (the second time from cache: a T5 row is 64 KB in bf16) instead of libtorch's f32 copy,
// log-softmax and gathers.
template <typename T>
HM_INLINE void logit_statistics_row(const typename T::Storage* x, int64_t v, int64_t target,
                                    float* out) {
  float max = -INFINITY;
#pragma omp simd reduction(max : max)
  for (int64_t j = 0; j < v; ++j) {
    float xj = T::load(x[j]);
    max = xj > max ? xj : max;
  }
  float sum_exp = 0.0f, sum = 0.0f;
#pragma omp simd reduction(+ : sum_exp, sum)
  for (int64_t j = 0; j < v; ++j) {
    float xj = T::load(x[j]);
    sum_exp += exp_small(xj - max);
    sum += xj;
  }
  out[0] = max + std::log(sum_exp);
  out[1] = T::load(x[target]);
  out[2] = sum;
}

// Its gradient, written straight in the logits' dtype (one rounding, where libtorch's
// composition computes it in f32 and casts): dx = g_lse · softmax(x) + g_sum, plus g_target
// at the target.
template <typename T>
HM_INLINE void logit_statistics_backward_row(const typename T::Storage* x, int64_t v,
                                             int64_t target, float lse, const float* g,
                                             typename T::Storage* dx) {
  float g_lse = g[0], g_sum = g[2];
#pragma omp simd
  for (int64_t j = 0; j < v; ++j) {
    dx[j] = T::store(g_lse * exp_small(T::load(x[j]) - lse) + g_sum);
  }
  dx[target] = T::store(g_lse * exp_small(T::load(x[target]) - lse) + g_sum + g[1]);
}

// The instantiations, each compiled for every vector width (templates cannot carry
// target_clones themselves; the always-inline bodies take the caller's target).
#define HM_GATED_KERNELS(T, Act, name)                                                      \
  HM_VECTOR_CLONES void name##_forward_##T(const T::Storage* a, const T::Storage* b,         \
                                           T::Storage* h, int64_t n) {                       \
    gated_forward_span<T, Act>(a, b, h, n);                                                  \
  }                                                                                          \
  HM_VECTOR_CLONES void name##_backward_##T(const T::Storage* a, const T::Storage* b,        \
                                            const T::Storage* dh, T::Storage* da,            \
                                            T::Storage* db, int64_t n) {                     \
    gated_backward_span<T, Act>(a, b, dh, da, db, n);                                        \
  }

#define HM_ROW_KERNELS(T)                                                                    \
  HM_VECTOR_CLONES float rms_forward_row_##T(const T::Storage* x, const T::Storage* w,       \
                                             T::Storage* y, int64_t d, float eps) {          \
    return rms_forward_row<T>(x, w, y, d, eps);                                              \
  }                                                                                          \
  HM_VECTOR_CLONES void rms_backward_row_##T(const T::Storage* x, const T::Storage* w,       \
                                             const T::Storage* dy, float r, T::Storage* dx,  \
                                             float* dw, int64_t d) {                         \
    rms_backward_row<T>(x, w, dy, r, dx, dw, d);                                             \
  }                                                                                          \
  HM_VECTOR_CLONES void logits_forward_row_##T(const T::Storage* x, int64_t v, int64_t t,     \
                                               float* out) {                                 \
    logit_statistics_row<T>(x, v, t, out);                                                   \
  }                                                                                          \
  HM_VECTOR_CLONES void logits_backward_row_##T(const T::Storage* x, int64_t v, int64_t t,    \
                                                float lse, const float* g, T::Storage* dx) {  \
    logit_statistics_backward_row<T>(x, v, t, lse, g, dx);                                   \
  }                                                                                          \
  HM_GATED_KERNELS(T, GeluTanh, gelu)                                                        \
  HM_GATED_KERNELS(T, Silu, silu)                                                            \
  template <>                                                                                \
  struct RowKernels<T> {                                                                     \
    static constexpr auto rms_forward = rms_forward_row_##T;                                 \
    static constexpr auto rms_backward = rms_backward_row_##T;                               \
    static constexpr auto gelu_forward = gelu_forward_##T;                                   \
    static constexpr auto gelu_backward = gelu_backward_##T;                                 \
    static constexpr auto silu_forward = silu_forward_##T;                                   \
    static constexpr auto silu_backward = silu_backward_##T;                                 \
    static constexpr auto logits_forward = logits_forward_row_##T;                           \
    static constexpr auto logits_backward = logits_backward_row_##T;                         \
  };

// Each dtype's row kernels, for the whole-tensor functions' templates.
template <typename T>
struct RowKernels;

HM_ROW_KERNELS(F32)
HM_ROW_KERNELS(BF16)

// ---- whole tensors -------------------------------------------------------------------

// Rows per block of the weight's gradient: fixed, so that its sum does not depend on the
// number of threads.
constexpr int64_t kRowsPerBlock = 32;

void check_input(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu(), "fused kernels run on the CPU; ", what, " is on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16,
              "fused kernels take f32 or bf16; ", what, " is ", t.scalar_type());
}

template <typename T>
typename T::Storage* data(const at::Tensor& t) {
  return reinterpret_cast<typename T::Storage*>(t.data_ptr());
}

// Returns (y, r): the normed rows and each row's 1/√(mean(x²) + ε).
std::pair<at::Tensor, at::Tensor> rms_norm_forward(const at::Tensor& input,
                                                   const at::Tensor& weight, double eps) {
  check_input(input, "the norm's input");
  check_input(weight, "the norm's weight");
  int64_t d = input.size(-1);
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == d, "a norm weight of ", weight.sizes(),
              " for rows of ", d);
  auto x = input.contiguous();
  auto w = weight.to(x.scalar_type()).contiguous();
  int64_t rows = d == 0 ? 0 : x.numel() / d;
  auto y = at::empty_like(x);
  auto r = at::empty({rows}, x.options().dtype(at::kFloat));
  float* r_data = r.data_ptr<float>();
  auto f = static_cast<float>(eps);
  auto rows_of = [&](auto type) {
    using T = decltype(type);
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        r_data[i] = RowKernels<T>::rms_forward(data<T>(x) + i * d, data<T>(w), data<T>(y) + i * d,
                                               d, f);
      }
    });
  };
  x.scalar_type() == at::kBFloat16 ? rows_of(BF16{}) : rows_of(F32{});
  return {y, r};
}

// Returns (dx, dw): dx in the input's dtype, dw in f32.
std::pair<at::Tensor, at::Tensor> rms_norm_backward(const at::Tensor& grad, const at::Tensor& input,
                                                    const at::Tensor& weight, const at::Tensor& r) {
  auto x = input.contiguous();
  auto dy = grad.to(x.scalar_type()).contiguous();
  auto w = weight.to(x.scalar_type()).contiguous();
  int64_t d = x.size(-1);
  int64_t rows = d == 0 ? 0 : x.numel() / d;
  auto dx = at::empty_like(x);
  int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  auto partial = at::zeros({blocks, d}, x.options().dtype(at::kFloat));
  const float* r_data = r.data_ptr<float>();
  float* partial_data = partial.data_ptr<float>();
  auto rows_of = [&](auto type) {
    using T = decltype(type);
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t block = begin; block < end; ++block) {
        float* dw = partial_data + block * d;
        int64_t last = std::min(rows, (block + 1) * kRowsPerBlock);
        for (int64_t i = block * kRowsPerBlock; i < last; ++i) {
          RowKernels<T>::rms_backward(data<T>(x) + i * d, data<T>(w), data<T>(dy) + i * d,
                                      r_data[i], data<T>(dx) + i * d, dw, d);
        }
      }
    });
  };
  x.scalar_type() == at::kBFloat16 ? rows_of(BF16{}) : rows_of(F32{});
  // The blocks added in order, in parallel over columns only (libtorch's own sum splits
  // its work by thread count): the same at any number of threads.
  auto dw = at::zeros({d}, partial.options());
  float* dw_data = dw.data_ptr<float>();
  at::parallel_for(0, d, 256, [&](int64_t begin, int64_t end) {
    for (int64_t block = 0; block < blocks; ++block) {
      const float* row = partial_data + block * d;
      for (int64_t j = begin; j < end; ++j) {
        dw_data[j] += row[j];
      }
    }
  });
  return {dx, dw};
}

enum class Activation : int { GeluTanh = 0, Silu = 1 };

// `product [.., 2F]` holds the gate (first F) and the linear half; returns `[.., F]`.
at::Tensor gated_forward(const at::Tensor& product, Activation act) {
  check_input(product, "the gated product");
  auto p = product.contiguous();
  int64_t width = p.size(-1);
  TORCH_CHECK(width % 2 == 0, "a gated product of odd width ", width);
  int64_t f = width / 2;
  int64_t rows = width == 0 ? 0 : p.numel() / width;
  auto shape = p.sizes().vec();
  shape.back() = f;
  auto h = at::empty(shape, p.options());
  auto rows_of = [&](auto type) {
    using T = decltype(type);
    auto kernel = act == Activation::GeluTanh ? RowKernels<T>::gelu_forward
                                              : RowKernels<T>::silu_forward;
    at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        auto* in = data<T>(p) + i * width;
        kernel(in, in + f, data<T>(h) + i * f, f);
      }
    });
  };
  p.scalar_type() == at::kBFloat16 ? rows_of(BF16{}) : rows_of(F32{});
  return h;
}

at::Tensor gated_backward(const at::Tensor& grad, const at::Tensor& product, Activation act) {
  auto p = product.contiguous();
  auto dh = grad.to(p.scalar_type()).contiguous();
  int64_t width = p.size(-1);
  int64_t f = width / 2;
  int64_t rows = width == 0 ? 0 : p.numel() / width;
  auto dp = at::empty_like(p);
  auto rows_of = [&](auto type) {
    using T = decltype(type);
    auto kernel = act == Activation::GeluTanh ? RowKernels<T>::gelu_backward
                                              : RowKernels<T>::silu_backward;
    at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        auto* in = data<T>(p) + i * width;
        auto* out = data<T>(dp) + i * width;
        kernel(in, in + f, data<T>(dh) + i * f, out, out + f, f);
      }
    });
  };
  p.scalar_type() == at::kBFloat16 ? rows_of(BF16{}) : rows_of(F32{});
  return dp;
}

// `targets` as int64 indices of `rows` logit rows of width `v`, each checked in range.
at::Tensor checked_targets(const at::Tensor& targets, int64_t rows, int64_t v) {
  TORCH_CHECK(targets.device().is_cpu(), "the targets are on ", targets.device());
  TORCH_CHECK(!at::isFloatingType(targets.scalar_type()) && targets.scalar_type() != at::kBool,
              "targets of ", targets.scalar_type(), " (integer ids wanted)");
  TORCH_CHECK(targets.numel() == rows, targets.numel(), " targets for ", rows, " logit rows");
  auto t = targets.to(at::kLong).contiguous();
  if (rows > 0) {
    auto low = t.min().item<int64_t>();
    auto high = t.max().item<int64_t>();
    TORCH_CHECK(low >= 0 && high < v, "a target id of ", low < 0 ? low : high,
                " outside the vocabulary of ", v);
  }
  return t;
}

// `logits [.., V]` (f32 or bf16) and `targets [..]`: `[.., 3]` f32 per row — log Σ e^x,
// the target's logit, Σ x.
// Returns the statistics and the checked targets.
std::pair<at::Tensor, at::Tensor> logit_statistics_forward(const at::Tensor& logits,
                                                           const at::Tensor& targets) {
  check_input(logits, "the logits");
  TORCH_CHECK(logits.dim() >= 1 && logits.size(-1) > 0, "logits of shape ", logits.sizes());
  auto x = logits.contiguous();
  int64_t v = x.size(-1);
  int64_t rows = x.numel() / v;
  auto t = checked_targets(targets, rows, v);
  auto shape = x.sizes().vec();
  shape.back() = 3;
  auto stats = at::empty(shape, x.options().dtype(at::kFloat));
  float* out = stats.data_ptr<float>();
  const int64_t* t_data = t.data_ptr<int64_t>();
  auto rows_of = [&](auto type) {
    using T = decltype(type);
    at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        RowKernels<T>::logits_forward(data<T>(x) + i * v, v, t_data[i], out + 3 * i);
      }
    });
  };
  x.scalar_type() == at::kBFloat16 ? rows_of(BF16{}) : rows_of(F32{});
  return {stats, t};
}

at::Tensor logit_statistics_backward(const at::Tensor& grad, const at::Tensor& logits,
                                     const at::Tensor& targets, const at::Tensor& lse) {
  auto x = logits.contiguous();
  auto g = grad.to(at::kFloat).contiguous();
  auto t = targets.contiguous();
  int64_t v = x.size(-1);
  int64_t rows = x.numel() / v;
  auto dx = at::empty_like(x);
  const float* g_data = g.data_ptr<float>();
  const float* lse_data = lse.data_ptr<float>();
  const int64_t* t_data = t.data_ptr<int64_t>();
  auto rows_of = [&](auto type) {
    using T = decltype(type);
    at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        RowKernels<T>::logits_backward(data<T>(x) + i * v, v, t_data[i], lse_data[i],
                                       g_data + 3 * i, data<T>(dx) + i * v);
      }
    });
  };
  x.scalar_type() == at::kBFloat16 ? rows_of(BF16{}) : rows_of(F32{});
  return dx;
}

// ---- autograd functions --------------------------------------------------------------

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& weight, double eps) {
    auto [y, r] = rms_norm_forward(input, weight, eps);
    ctx->save_for_backward({input, weight, r});
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "the fused RMS norm is differentiable once (no create_graph)");
    auto saved = ctx->get_saved_variables();
    const auto& input = saved[0];
    const auto& weight = saved[1];
    auto [dx, dw] = rms_norm_backward(grads[0], input, weight, saved[2]);
    return {ctx->needs_input_grad(0) ? dx.view(input.sizes()) : at::Tensor(),
            ctx->needs_input_grad(1) ? dw.to(weight.scalar_type()) : at::Tensor(), at::Tensor()};
  }
};

struct GatedActivationFunction : public torch::autograd::Function<GatedActivationFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& product, int64_t act) {
    ctx->save_for_backward({product});
    ctx->saved_data["act"] = act;
    return gated_forward(product, static_cast<Activation>(act));
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "the fused gated activation is differentiable once (no create_graph)");
    auto product = ctx->get_saved_variables()[0];
    auto act = static_cast<Activation>(ctx->saved_data["act"].toInt());
    return {gated_backward(grads[0], product, act).view(product.sizes()), at::Tensor()};
  }
};

struct LogitStatisticsFunction : public torch::autograd::Function<LogitStatisticsFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets) {
    auto [stats, checked] = logit_statistics_forward(logits, targets);
    // The checked int64 targets and the log-partitions (a float a row), not the output.
    ctx->save_for_backward({logits, checked, stats.select(-1, 0).contiguous()});
    return stats;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "the fused logit statistics are differentiable once (no create_graph)");
    auto saved = ctx->get_saved_variables();
    const auto& logits = saved[0];
    auto dx = logit_statistics_backward(grads[0], logits, saved[1], saved[2]);
    return {dx.view(logits.sizes()), at::Tensor()};
  }
};

using hm::guarded;

bool records_graph(std::initializer_list<at::Tensor> inputs) {
  if (!at::GradMode::is_enabled()) {
    return false;
  }
  for (const auto& t : inputs) {
    if (t.requires_grad()) {
      return true;
    }
  }
  return false;
}

}  // namespace

extern "C" {

// T5's RMS norm of `input [.., d]` (f32 or bf16, CPU) with `weight [d]` (f32 or bf16),
// in the input's dtype; differentiable in both.
int hm_fused_rms_norm(at::Tensor* input, at::Tensor* weight, double eps, at::Tensor** out) {
  return guarded([&] {
    if (records_graph({*input, *weight})) {
      *out = new at::Tensor(RmsNormFunction::apply(*input, *weight, eps));
    } else {
      *out = new at::Tensor(rms_norm_forward(*input, *weight, eps).first);
    }
  });
}

// `act(product[.., :F]) * product[.., F:]` (activation 0: gelu with the tanh
// approximation, 1: silu), differentiable in `product`.
int hm_fused_gated_activation(at::Tensor* product, int activation, at::Tensor** out) {
  return guarded([&] {
    TORCH_CHECK(activation == 0 || activation == 1, "no gated activation numbered ", activation);
    if (records_graph({*product})) {
      *out = new at::Tensor(GatedActivationFunction::apply(*product, int64_t{activation}));
    } else {
      *out = new at::Tensor(gated_forward(*product, static_cast<Activation>(activation)));
    }
  });
}

// Per row of `logits [.., V]` (f32 or bf16, CPU) with `targets [..]` (integer ids):
// `[.., 3]` f32 holding log Σ e^x, x[target] and Σ x; differentiable in the logits.
int hm_fused_logit_statistics(at::Tensor* logits, at::Tensor* targets, at::Tensor** out) {
  return guarded([&] {
    if (records_graph({*logits})) {
      *out = new at::Tensor(LogitStatisticsFunction::apply(*logits, *targets));
    } else {
      *out = new at::Tensor(logit_statistics_forward(*logits, *targets).first);
    }
  });
}

}  // extern "C"
