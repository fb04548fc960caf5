// Synchronised BatchNorm as one autograd node, the way PyTorch's SyncBatchNorm
// does it: each rank's per-channel moments (mean, 1/std, count) are gathered
// in one collective and merged by count, the input is normalised with the
// merged moments, and the backward sums two per-channel reductions over the
// ranks in one collective. On CUDA the five steps are libtorch's fused
// kernels (batch_norm_stats, batch_norm_gather_stats_with_counts,
// batch_norm_elemt, batch_norm_backward_reduce, batch_norm_backward_elemt);
// libtorch has no CPU kernels for them, so on the CPU (or on CUDA with
// FNC_SYNC_BN_COMPOSITE=1, to compare) the same contracts are written here
// with ATen's ordinary ops, the moments merged by Chan's formula. Only the
// input (in its own dtype) and per-channel vectors are kept for the backward.
#include "shim.hpp"

#include <torch/csrc/autograd/custom_function.h>

#include <cstdlib>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;

bool composite(const Tensor& x) {
  static const bool forced = [] {
    const char* v = std::getenv("FNC_SYNC_BN_COMPOSITE");
    return v != nullptr && *v != '\0' && std::string(v) != "0";
  }();
  return !x.is_cuda() || forced;
}

// Every dimension but the channels'.
std::vector<int64_t> reduced(const Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) {
    dims.push_back(d);
  }
  return dims;
}

// A per-channel vector shaped to broadcast against `x` ([1, C, 1, ...]).
Tensor per_channel(const Tensor& v, const Tensor& x) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = v.numel();
  return v.view(shape);
}

// batch_norm_stats: this rank's mean and 1/sqrt(var + eps) per channel
// (biased variance), float32 whatever the input.
std::tuple<Tensor, Tensor> stats(const Tensor& x, double eps) {
  if (!composite(x)) {
    return at::batch_norm_stats(x, eps);
  }
  auto dims = reduced(x);
  Tensor xf = x.to(at::kFloat);
  Tensor mean = xf.mean(dims);
  Tensor var = (xf - per_channel(mean, xf)).square().mean(dims);
  return {mean, (var + eps).rsqrt()};
}

}  // namespace

namespace fnc {

// batch_norm_gather_stats_with_counts: the ranks' moments (`mean_all` and
// `invstd_all` [world, C], `counts` [world]) merged into the whole batch's
// mean and 1/sqrt(var + eps) (Chan et al.: the merged second moment is the
// sum of the parts' plus each part's count times its mean's squared distance
// to the merged mean); the running statistics, when given, move towards the
// merged mean and unbiased variance by `momentum`.
std::tuple<Tensor, Tensor> merge_moments(const Tensor& mean_all, const Tensor& invstd_all,
                                         const Tensor& running_mean, const Tensor& running_var,
                                         double momentum, double eps, const Tensor& counts) {
  Tensor n = counts.to(at::kFloat).view({-1, 1});
  Tensor total = n.sum(0);
  Tensor mean = (n * mean_all).sum(0) / total;
  Tensor var_parts = invstd_all.square().reciprocal() - eps;
  Tensor m2 = (n * (var_parts + (mean_all - mean).square())).sum(0);
  Tensor var = m2 / total;
  if (running_mean.defined()) {
    running_mean.mul_(1.0 - momentum).add_(mean * momentum);
  }
  if (running_var.defined()) {
    Tensor unbiased = var * total / (total - 1.0).clamp_min(1.0);
    running_var.mul_(1.0 - momentum).add_(unbiased * momentum);
  }
  return {mean, (var + eps).rsqrt()};
}

}  // namespace fnc

namespace {

std::tuple<Tensor, Tensor> gather_stats(const Tensor& x, const Tensor& mean_all,
                                        const Tensor& invstd_all, const Tensor& running_mean,
                                        const Tensor& running_var, double momentum, double eps,
                                        const Tensor& counts) {
  if (!composite(x)) {
    // The kernel takes its element type from the running statistics, or
    // from the input when there are none (a replay): then a bfloat16 input
    // would want bfloat16 counts. Scratch float32 statistics keep it float.
    Tensor rm = running_mean.defined() ? running_mean : at::zeros_like(mean_all[0]);
    Tensor rv = running_var.defined() ? running_var : at::ones_like(mean_all[0]);
    return at::batch_norm_gather_stats_with_counts(x, mean_all, invstd_all, rm, rv, momentum, eps,
                                                   counts);
  }
  return fnc::merge_moments(mean_all, invstd_all, running_mean, running_var, momentum, eps,
                            counts);
}

// batch_norm_elemt: (x - mean) * invstd * weight + bias, in x's dtype.
Tensor elemt(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& mean,
             const Tensor& invstd, double eps) {
  if (!composite(x)) {
    return at::batch_norm_elemt(x, weight, bias, mean, invstd, eps);
  }
  Tensor scale = invstd * weight;
  Tensor shift = bias - mean * scale;
  Tensor y = x.to(at::kFloat) * per_channel(scale, x) + per_channel(shift, x);
  return y.to(x.scalar_type());
}

// batch_norm_backward_reduce: per channel, sum(dy), sum(dy * (x - mean)), and
// this rank's gradients of weight and bias.
std::tuple<Tensor, Tensor, Tensor, Tensor> backward_reduce(const Tensor& dy, const Tensor& x,
                                                           const Tensor& mean,
                                                           const Tensor& invstd,
                                                           const Tensor& weight, bool input_g,
                                                           bool weight_g, bool bias_g) {
  if (!composite(x)) {
    return at::batch_norm_backward_reduce(dy, x, mean, invstd, weight, input_g, weight_g, bias_g);
  }
  auto dims = reduced(x);
  Tensor dyf = dy.to(at::kFloat);
  Tensor sum_dy = dyf.sum(dims);
  Tensor sum_dy_xmu = (dyf * (x.to(at::kFloat) - per_channel(mean, x))).sum(dims);
  return {sum_dy, sum_dy_xmu, sum_dy_xmu * invstd, sum_dy};
}

// batch_norm_backward_elemt: the input's gradient from the sums over every
// rank (`sum_dy`, `sum_dy_xmu`) and the ranks' counts, in x's dtype.
Tensor backward_elemt(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                      const Tensor& weight, const Tensor& sum_dy, const Tensor& sum_dy_xmu,
                      const Tensor& counts) {
  if (!composite(x)) {
    return at::batch_norm_backward_elemt(dy, x, mean, invstd, weight.to(mean.scalar_type()),
                                         sum_dy, sum_dy_xmu, counts);
  }
  Tensor total = counts.to(at::kFloat).sum();
  Tensor mean_dy = sum_dy / total;
  Tensor proj = invstd.square() * (sum_dy_xmu / total);
  Tensor scale = invstd * weight;
  Tensor dx = (dy.to(at::kFloat) - per_channel(mean_dy, x) -
               (x.to(at::kFloat) - per_channel(mean, x)) * per_channel(proj, x)) *
              per_channel(scale, x);
  return dx.to(x.scalar_type());
}

struct SyncBatchNorm : public torch::autograd::Function<SyncBatchNorm> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x,
                        const Tensor& weight, const Tensor& bias, c10::IValue running_mean,
                        c10::IValue running_var, c10::IValue group, double momentum,
                        double eps) {
    // The running statistics travel as IValues (None in a replay): autograd
    // takes every Tensor argument for an input, and an undefined one has no
    // device to record.
    auto tensor_or_none = [](const c10::IValue& v) { return v.isTensor() ? v.toTensor() : Tensor(); };
    auto* g = fnc::from_capsule(group);
    TORCH_CHECK(weight.defined() && bias.defined(), "synchronised BatchNorm needs its weight and bias");
    TORCH_CHECK(x.dim() >= 2 && x.numel() > 0, "synchronised BatchNorm of an empty input");
    const int64_t c = x.size(1);
    auto [mean, invstd] = stats(x, eps);
    Tensor count = at::full({1}, static_cast<double>(x.numel() / c), mean.options());
    Tensor mine = at::cat({mean, invstd, count});
    Tensor all = at::empty({g->world * (2 * c + 1)}, mine.options());
    fnc::all_gather_into(g, mine, all);
    all = all.view({g->world, 2 * c + 1});
    Tensor counts = all.select(1, 2 * c).contiguous();
    auto [gmean, ginvstd] = gather_stats(x, all.narrow(1, 0, c).contiguous(),
                                         all.narrow(1, c, c).contiguous(),
                                         tensor_or_none(running_mean),
                                         tensor_or_none(running_var), momentum, eps, counts);
    ctx->save_for_backward({x, weight, gmean, ginvstd, counts.to(at::kInt)});
    ctx->saved_data["group"] = group;
    return elemt(x, weight, bias, gmean, ginvstd, eps);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor& x = saved[0];
    const Tensor& weight = saved[1];
    const Tensor& mean = saved[2];
    const Tensor& invstd = saved[3];
    const Tensor& counts = saved[4];
    const bool channels_last = x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast);
    Tensor dy = grads[0].contiguous(channels_last ? at::MemoryFormat::ChannelsLast
                                                  : at::MemoryFormat::Contiguous);
    const bool input_g = ctx->needs_input_grad(0);
    auto [sum_dy, sum_dy_xmu, grad_weight, grad_bias] = backward_reduce(
        dy, x, mean, invstd, weight, input_g, ctx->needs_input_grad(1), ctx->needs_input_grad(2));
    Tensor grad_input;
    if (input_g) {
      const int64_t c = x.size(1);
      Tensor both = at::cat({sum_dy, sum_dy_xmu});
      fnc::all_reduce_sum(fnc::from_capsule(ctx->saved_data["group"]), both);
      grad_input = backward_elemt(dy, x, mean, invstd, weight, both.narrow(0, 0, c),
                                  both.narrow(0, c, c), counts);
    }
    return {grad_input, grad_weight, grad_bias, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

extern "C" {

// Training-mode BatchNorm of `x` over every rank's batch (a new tensor, null
// with `err` filled on failure). `running_mean` and `running_var` are updated
// in place when defined (undefined in a replay of the forward).
at::Tensor* fnc_dist_sync_batch_norm(void* group, at::Tensor* x, at::Tensor* weight,
                                     at::Tensor* bias, at::Tensor* running_mean,
                                     at::Tensor* running_var, double momentum, double eps,
                                     char* err, size_t errlen) {
  return fnc::guarded<at::Tensor*>(err, errlen, nullptr, [&] {
    auto held = [](const at::Tensor* t) {
      return t->defined() ? c10::IValue(*t) : c10::IValue();
    };
    return new at::Tensor(SyncBatchNorm::apply(*x, *weight, *bias, held(running_mean),
                                               held(running_var),
                                               fnc::capsule_of(fnc::group_of(group)), momentum,
                                               eps));
  });
}

// The merge of per-rank moments that synchronised BatchNorm uses on the CPU,
// alone (tests): `[2, C]`, the merged mean and 1/sqrt(var + eps).
at::Tensor* fnc_dist_merge_moments(at::Tensor* mean_all, at::Tensor* invstd_all,
                                   at::Tensor* counts, double eps, char* err, size_t errlen) {
  return fnc::guarded<at::Tensor*>(err, errlen, nullptr, [&] {
    auto [mean, invstd] =
        fnc::merge_moments(*mean_all, *invstd_all, Tensor(), Tensor(), 0.0, eps, *counts);
    return new at::Tensor(at::stack({mean, invstd}));
  });
}

}  // extern "C"
