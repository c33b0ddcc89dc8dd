// CPU kernels for gn_det's fused GroupNorm + activation (ReLU or identity).
//
// Why not PyTorch's own kernels: native_group_norm and its backward make one pass over the whole
// tensor for statistics and another to normalize, so nothing is in cache on the second pass, and
// ReLU costs extra passes on both sides (its own forward pass; threshold_backward's read of the
// output and write of a masked gradient). Here each (sample, group) block is finished before the
// next starts (the second pass reads what the first left in cache), ReLU is folded into the
// normalize pass, and its mask is recomputed in backward from GN's input and per-channel
// coefficients, so backward reads dy and x twice and writes dx once, into a buffer the caller
// may hand over.
//
// Layout: contiguous (N, C, *) float32 or float64; statistics accumulate in double across
// chunks. Everything else (channels-last, half precision) stays on PyTorch's kernels (Python side).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <Python.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

namespace gn_det {
namespace {

// Elements summed in the input's precision before the partial sum moves to double.
constexpr int64_t kChunk = 256;

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GN_DET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GN_DET_CLONES
#endif
#define GN_DET_INLINE inline __attribute__((always_inline))

// Shifted sums (by an estimate of the mean) keep E[x^2] - E[x]^2 from cancelling when |mean| >> std.
template <typename T>
GN_DET_INLINE void shifted_sums(const T* x, int64_t n, T shift, double& s1, double& s2) {
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    T a1 = 0, a2 = 0;
#pragma omp simd reduction(+ : a1, a2)
    for (int64_t i = start; i < end; ++i) {
      const T d = x[i] - shift;
      a1 += d;
      a2 += d * d;
    }
    s1 += a1;
    s2 += a2;
  }
}

template <typename T>
GN_DET_INLINE void affine_act(const T* x, T* y, int64_t n, T a, T b, bool relu) {
  if (relu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const T v = x[i] * a + b;
      y[i] = v <= T(0) ? T(0) : v;  // keeps NaN, as torch.relu does
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a + b;
  }
}

// Sums over one channel row of g = dy (masked by the ReLU's sign) and g * (x - mean).
template <typename T>
GN_DET_INLINE void grad_sums(const T* dy, const T* x, int64_t n, T a, T b, T mean, bool relu,
                             double& s1, double& s2) {
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    T g1 = 0, g2 = 0;
    if (relu) {
#pragma omp simd reduction(+ : g1, g2)
      for (int64_t i = start; i < end; ++i) {
        const T g = (x[i] * a + b) > T(0) ? dy[i] : T(0);
        g1 += g;
        g2 += g * (x[i] - mean);
      }
    } else {
#pragma omp simd reduction(+ : g1, g2)
      for (int64_t i = start; i < end; ++i) {
        g1 += dy[i];
        g2 += dy[i] * (x[i] - mean);
      }
    }
    s1 += g1;
    s2 += g2;
  }
}

// dx = cg * g + k1 * x + k0, g as in grad_sums.
template <typename T>
GN_DET_INLINE void grad_input(const T* dy, const T* x, T* dx, int64_t n, T a, T b, T cg, T k1, T k0,
                              bool relu) {
  if (relu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const T g = (x[i] * a + b) > T(0) ? dy[i] : T(0);
      dx[i] = cg * g + k1 * x[i] + k0;
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dx[i] = cg * dy[i] + k1 * x[i] + k0;
  }
}

struct Dims {
  int64_t n, c, hw, groups, cg;
};

// The three kernels below run over a range of (sample, group) blocks; each one is compiled per
// instruction set (GN_DET_CLONES) for float, picked at load time.
template <typename T>
GN_DET_INLINE void forward_blocks(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd,
                                  Dims d, double eps, bool relu, int64_t begin, int64_t end) {
  const int64_t block = d.cg * d.hw;
  for (int64_t ng = begin; ng < end; ++ng) {
    const T* xb = x + ng * block;
    // Shift by the mean of the first chunk: close to the group's mean even when the first
    // element is an outlier (a padded corner), so E[d^2] - E[d]^2 keeps its precision.
    const int64_t head = std::min(block, kChunk);
    T head_sum = 0;  // only an estimate: float32 is enough
#pragma omp simd reduction(+ : head_sum)
    for (int64_t i = 0; i < head; ++i) head_sum += xb[i];
    const T shift = head_sum / static_cast<T>(head);
    double s1 = 0, s2 = 0;
    shifted_sums<T>(xb, block, shift, s1, s2);
    const double m1 = s1 / block;
    const double var = std::max(s2 / block - m1 * m1, 0.0);
    const double mu = static_cast<double>(shift) + m1;
    const double r = 1.0 / std::sqrt(var + eps);
    mean[ng] = static_cast<T>(mu);
    rstd[ng] = static_cast<T>(r);
    const int64_t c0 = (ng % d.groups) * d.cg;
    for (int64_t j = 0; j < d.cg; ++j) {
      const T a = rstd[ng] * w[c0 + j];
      const T bb = b[c0 + j] - mean[ng] * a;
      affine_act<T>(xb + j * d.hw, y + ng * block + j * d.hw, d.hw, a, bb, relu);
    }
  }
}

template <typename T>
GN_DET_INLINE void apply_blocks(const T* x, const T* w, const T* b, const T* mean, const T* rstd,
                                T* y, Dims d, bool relu, int64_t begin, int64_t end) {
  const int64_t block = d.cg * d.hw;
  for (int64_t ng = begin; ng < end; ++ng) {
    const int64_t c0 = (ng % d.groups) * d.cg;
    for (int64_t j = 0; j < d.cg; ++j) {
      const T a = rstd[ng] * w[c0 + j];
      const T bb = b[c0 + j] - mean[ng] * a;
      affine_act<T>(x + ng * block + j * d.hw, y + ng * block + j * d.hw, d.hw, a, bb, relu);
    }
  }
}

// Per block: pass 1 gives the per-channel sums (kept in s1/s2 for the affine's gradients) and the
// group's two reductions; pass 2 (when dx is wanted) writes dx while the block is still in cache.
template <typename T>
GN_DET_INLINE void backward_blocks(const T* dy, const T* x, const T* w, const T* b, const T* mean,
                                   const T* rstd, T* dx, double* s1, double* s2, Dims d, bool relu,
                                   int64_t begin, int64_t end) {
  const int64_t block = d.cg * d.hw;
  const double inv_m = 1.0 / static_cast<double>(block);
  for (int64_t ng = begin; ng < end; ++ng) {
    const int64_t c0 = (ng % d.groups) * d.cg;
    const T mu = mean[ng], r = rstd[ng];
    double sum_wg = 0, sum_wgx = 0;  // sum of w*g and of w*g*(x-mean) over the group
    for (int64_t j = 0; j < d.cg; ++j) {
      const int64_t row = ng * d.cg + j;
      const T a = r * w[c0 + j];
      const T bb = b[c0 + j] - mu * a;
      double r1 = 0, r2 = 0;
      grad_sums<T>(dy + row * d.hw, x + row * d.hw, d.hw, a, bb, mu, relu, r1, r2);
      s1[row] = r1;
      s2[row] = r2;
      sum_wg += static_cast<double>(w[c0 + j]) * r1;
      sum_wgx += static_cast<double>(w[c0 + j]) * r2;
    }
    if (dx == nullptr) continue;
    // dx = r*w*g - r*mean_grp(w*g) - r^3 * (x-mean) * mean_grp(w*g*(x-mean))
    const double rd = r;
    const double k1 = -rd * rd * rd * sum_wgx * inv_m;
    const double k0 = -rd * sum_wg * inv_m - k1 * static_cast<double>(mu);
    for (int64_t j = 0; j < d.cg; ++j) {
      const int64_t row = ng * d.cg + j;
      const T a = r * w[c0 + j];
      const T bb = b[c0 + j] - mu * a;
      grad_input<T>(dy + row * d.hw, x + row * d.hw, dx + row * d.hw, d.hw, a, bb, a,
                    static_cast<T>(k1), static_cast<T>(k0), relu);
    }
  }
}

// The overloads AT_DISPATCH calls; double (gradcheck, float64 models) gets the baseline build only.
GN_DET_CLONES void forward_any(const float* x, const float* w, const float* b, float* y, float* mean,
                               float* rstd, Dims d, double eps, bool relu, int64_t begin,
                               int64_t end) {
  forward_blocks<float>(x, w, b, y, mean, rstd, d, eps, relu, begin, end);
}
void forward_any(const double* x, const double* w, const double* b, double* y, double* mean,
                 double* rstd, Dims d, double eps, bool relu, int64_t begin, int64_t end) {
  forward_blocks<double>(x, w, b, y, mean, rstd, d, eps, relu, begin, end);
}
GN_DET_CLONES void apply_any(const float* x, const float* w, const float* b, const float* mean,
                             const float* rstd, float* y, Dims d, bool relu, int64_t begin,
                             int64_t end) {
  apply_blocks<float>(x, w, b, mean, rstd, y, d, relu, begin, end);
}
void apply_any(const double* x, const double* w, const double* b, const double* mean,
               const double* rstd, double* y, Dims d, bool relu, int64_t begin, int64_t end) {
  apply_blocks<double>(x, w, b, mean, rstd, y, d, relu, begin, end);
}
GN_DET_CLONES void backward_any(const float* dy, const float* x, const float* w, const float* b,
                                const float* mean, const float* rstd, float* dx, double* s1,
                                double* s2, Dims d, bool relu, int64_t begin, int64_t end) {
  backward_blocks<float>(dy, x, w, b, mean, rstd, dx, s1, s2, d, relu, begin, end);
}
void backward_any(const double* dy, const double* x, const double* w, const double* b,
                  const double* mean, const double* rstd, double* dx, double* s1, double* s2, Dims d,
                  bool relu, int64_t begin, int64_t end) {
  backward_blocks<double>(dy, x, w, b, mean, rstd, dx, s1, s2, d, relu, begin, end);
}

Dims check_and_dims(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                    int64_t num_groups, const char* op) {
  TORCH_CHECK(x.device().is_cpu(), op, ": expected a CPU tensor, got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.dim() >= 2 && x.is_contiguous(), op, ": expected a contiguous (N, C, *) tensor");
  TORCH_CHECK(x.numel() > 0, op, ": empty input");
  const int64_t c = x.size(1);
  TORCH_CHECK(num_groups > 0 && c % num_groups == 0, op, ": num_groups=", num_groups,
              " does not divide ", c, " channels");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == c && bias.dim() == 1 && bias.size(0) == c, op,
              ": weight and bias must have shape (", c, ",)");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() && bias.scalar_type() == x.scalar_type(), op,
              ": weight and bias must have the input's dtype");
  return Dims{x.size(0), c, x.numel() / (x.size(0) * c), num_groups, c / num_groups};
}

// Elements a parallel task should cover to be worth scheduling.
constexpr int64_t kTaskElements = 32768;

// d gamma_c = sum_n rstd[n, g(c)] * s2[n, c] and d beta_c = sum_n s1[n, c], in double. One loop,
// not ATen ops (a cast, repeat_interleave, a product, two sums and two casts): those cost
// 0.02 ms of the 0.07 ms backward on the smallest FPN level, and up to ~1 ms on the RoI heads.
template <typename T>
void affine_grads(const double* s1, const double* s2, const T* rstd, T* dw, T* db, const Dims& d) {
  // A channel's sum over N is one task's work, so a thread split changes no bit.
  at::parallel_for(0, d.c, std::max<int64_t>(1, kTaskElements / d.n), [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      const int64_t g = ch / d.cg;
      double sw = 0, sb = 0;
      for (int64_t n = 0; n < d.n; ++n) {
        sw += static_cast<double>(rstd[n * d.groups + g]) * s2[n * d.c + ch];
        sb += s1[n * d.c + ch];
      }
      if (dw != nullptr) dw[ch] = static_cast<T>(sw);
      if (db != nullptr) db[ch] = static_cast<T>(sb);
    }
  });
}

// Blocks per parallel task: enough elements that a task is worth scheduling.
int64_t grain(const Dims& d) {
  return std::max<int64_t>(1, kTaskElements / std::max<int64_t>(1, d.cg * d.hw));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& weight,
                                                       const at::Tensor& bias, int64_t num_groups,
                                                       double eps, bool relu) {
  const Dims d = check_and_dims(x, weight, bias, num_groups, "gn_det::group_norm_act_forward");
  const at::Tensor w = weight.contiguous(), b = bias.contiguous();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor mean = at::empty({d.n, d.groups}, x.options());
  at::Tensor rstd = at::empty({d.n, d.groups}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gn_det_forward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    scalar_t* mp = mean.mutable_data_ptr<scalar_t>();
    scalar_t* rp = rstd.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, d.n * d.groups, grain(d), [&](int64_t begin, int64_t end) {
      forward_any(xp, wp, bp, yp, mp, rp, d, eps, relu, begin, end);
    });
  });
  return {y, mean, rstd};
}

void check_stats(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd, const Dims& d,
                 const char* op) {
  TORCH_CHECK(mean.scalar_type() == x.scalar_type() && rstd.scalar_type() == x.scalar_type() &&
                  mean.numel() == d.n * d.groups && rstd.numel() == d.n * d.groups,
              op, ": mean and rstd must be (N, G) tensors of the input's dtype");
}

at::Tensor apply(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                 const at::Tensor& mean, const at::Tensor& rstd, bool relu) {
  const char* op = "gn_det::group_norm_act_apply";
  const Dims d = check_and_dims(x, weight, bias, mean.size(-1), op);
  check_stats(x, mean, rstd, d, op);
  const at::Tensor w = weight.contiguous(), b = bias.contiguous();
  const at::Tensor m = mean.contiguous(), r = rstd.contiguous();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gn_det_apply", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    const scalar_t* rp = r.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, d.n * d.groups, grain(d), [&](int64_t begin, int64_t end) {
      apply_any(xp, wp, bp, mp, rp, yp, d, relu, begin, end);
    });
  });
  return y;
}

// ``out``: an optional buffer for dx (same shape, dtype, contiguous, not aliasing dy or x), e.g.
// the recomputed output that the next layer's backward has finished with.
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& dy_in, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
    const at::Tensor& mean, const at::Tensor& rstd, bool relu, const c10::optional<at::Tensor>& out,
    std::array<bool, 3> needs) {
  const char* op = "gn_det::group_norm_act_backward";
  const Dims d = check_and_dims(x, weight, bias, mean.size(-1), op);
  check_stats(x, mean, rstd, d, op);
  TORCH_CHECK(dy_in.sizes() == x.sizes() && dy_in.scalar_type() == x.scalar_type(), op,
              ": dy must have the input's shape and dtype");
  const at::Tensor dy = dy_in.contiguous();
  const at::Tensor w = weight.contiguous(), b = bias.contiguous();
  const at::Tensor m = mean.contiguous(), r = rstd.contiguous();
  at::Tensor dx;
  if (needs[0]) {
    if (out.has_value() && out->defined()) {
      TORCH_CHECK(out->sizes() == x.sizes() && out->scalar_type() == x.scalar_type() &&
                      out->is_contiguous(),
                  op, ": out must be a contiguous tensor of the input's shape and dtype");
      TORCH_CHECK(!out->is_same(dy) && !out->is_same(x), op, ": out must not alias dy or x");
      dx = *out;
    } else {
      dx = at::empty_like(x, at::MemoryFormat::Contiguous);
    }
  }
  auto acc = x.options().dtype(at::kDouble);
  at::Tensor s1 = at::empty({d.n, d.c}, acc), s2 = at::empty({d.n, d.c}, acc);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gn_det_backward", [&] {
    const scalar_t* dyp = dy.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    const scalar_t* rp = r.const_data_ptr<scalar_t>();
    scalar_t* dxp = dx.defined() ? dx.mutable_data_ptr<scalar_t>() : nullptr;
    double* s1p = s1.mutable_data_ptr<double>();
    double* s2p = s2.mutable_data_ptr<double>();
    at::parallel_for(0, d.n * d.groups, grain(d), [&](int64_t begin, int64_t end) {
      backward_any(dyp, xp, wp, bp, mp, rp, dxp, s1p, s2p, d, relu, begin, end);
    });
  });
  at::Tensor dw, db;
  if (needs[1]) dw = at::empty({d.c}, x.options());
  if (needs[2]) db = at::empty({d.c}, x.options());
  if (needs[1] || needs[2]) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gn_det_affine_grads", [&] {
      affine_grads(s1.const_data_ptr<double>(), s2.const_data_ptr<double>(), r.const_data_ptr<scalar_t>(),
                   needs[1] ? dw.mutable_data_ptr<scalar_t>() : nullptr,
                   needs[2] ? db.mutable_data_ptr<scalar_t>() : nullptr, d);
    });
  }
  return {dx, dw, db};
}

}  // namespace

TORCH_LIBRARY(gn_det, m) {
  m.def("group_norm_act_forward(Tensor x, Tensor weight, Tensor bias, int num_groups, float eps, "
        "bool relu) -> (Tensor, Tensor, Tensor)");
  m.def("group_norm_act_apply(Tensor x, Tensor weight, Tensor bias, Tensor mean, Tensor rstd, "
        "bool relu) -> Tensor");
  m.def("group_norm_act_backward(Tensor dy, Tensor x, Tensor weight, Tensor bias, Tensor mean, "
        "Tensor rstd, bool relu, Tensor(a!)? out, bool[3] needs) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gn_det, CPU, m) {
  m.impl("group_norm_act_forward", &forward);
  m.impl("group_norm_act_apply", &apply);
  m.impl("group_norm_act_backward", &backward);
}

}  // namespace gn_det

// ``import gn_det._C`` loads this library (which registers the ops above); the module is empty.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
