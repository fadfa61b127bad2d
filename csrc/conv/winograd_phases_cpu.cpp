#include "winograd_phases_cpu.h"

#include <ATen/Dispatch.h>

#include <vector>

#include "channels_last_staging.h"
#include "conv_algorithm.h"
#include "winograd_cpu.h"

namespace convpool::cpu {
namespace {

// Output s m + a takes input m + o through kernel tap a + pad - s o: whether every tap of every
// phase has its o in {-1, 0, 1} and the phases cover the output exactly (stride s along h and w),
// and Winograd's s^2 x 36 / 16 multiplications are at most 2/3 of the taps' (4x4 stride 2: 9
// against 16; not 3x3 stride 2, 9 against 9).
bool phases_fit(const ConvGeometry& g, int64_t& s) {
  s = g.stride[1];
  if (g.groups != 1 || g.kernel[0] != 1 || g.stride[0] != 1 || g.pad[0] != 0 ||
      g.image[0] != g.grid[0] || s < 2 || g.stride[2] != s) {
    return false;
  }
  for (int d = 1; d < kSpatialDims; ++d) {
    if (g.dilation[d] != 1 || g.image[d] != s * g.grid[d]) return false;
    for (int64_t a = 0; a < s; ++a) {
      for (int64_t tap = 0; tap < g.kernel[d]; ++tap) {
        const int64_t reach = a + g.pad[d] - tap;
        if (reach % s == 0 && (reach / s < -1 || reach / s > 1)) return false;
      }
    }
  }
  return g.kernel[1] * g.kernel[2] * 16 * 2 >= s * s * 36 * 3;
}

// The 3x3 conv's weight [s^2 K, C, 3, 3] from the conv_transpose's [C, K, kh, kw] (contiguous):
// output channel (a s + b) K + k, tap (u, v) is tap (a + pad_h - s (u - 1), b + pad_w - s (v - 1))
// of channel k, zero where that lies outside the kernel.
template <typename T>
std::vector<T> phase_weight(const T* w, const ConvGeometry& g, int64_t s, int64_t C) {
  const int64_t K = g.channels, KH = g.kernel[1], KW = g.kernel[2];
  std::vector<T> w3(s * s * K * C * 9, T(0));
  for (int64_t a = 0; a < s; ++a) {
    for (int64_t b = 0; b < s; ++b) {
      for (int64_t u = 0; u < 3; ++u) {
        for (int64_t v = 0; v < 3; ++v) {
          const int64_t th = a + g.pad[1] - s * (u - 1), tw = b + g.pad[2] - s * (v - 1);
          if (th < 0 || th >= KH || tw < 0 || tw >= KW) continue;
          for (int64_t k = 0; k < K; ++k) {
            T* dst = w3.data() + ((a * s + b) * K + k) * C * 9 + u * 3 + v;
            for (int64_t c = 0; c < C; ++c) dst[c * 9] = w[((c * K + k) * KH + th) * KW + tw];
          }
        }
      }
    }
  }
  return w3;
}

}  // namespace

bool winograd_conv_transpose_phases(const at::Tensor& x, const at::Tensor& weight,
                                    const at::Tensor& y, const ConvGeometry& g) {
  const auto type = x.scalar_type();
  int64_t s = 0;
  // A vector of output channels stays within one phase (winograd_tiles.h, Plan::interleave).
  if ((type != at::kFloat && type != at::kDouble) || weight.scalar_type() != type ||
      !phases_fit(g, s) || g.channels % (64 / x.element_size()) != 0) {
    return false;
  }
  const int64_t batch = x.size(0), out_channels = s * s * g.channels;
  ConvGeometry conv = g;
  conv.channels = x.size(1);
  for (int d = 1; d < kSpatialDims; ++d) {
    conv.image[d] = g.grid[d];
    conv.kernel[d] = 3;
    conv.pad[d] = 1;
    conv.stride[d] = 1;
  }
  if (conv_algorithm_for(conv, batch, out_channels, ConvPass::kForward) != ConvAlgorithm::kWinograd)
    return false;
  // The batched variant (many channels on small maps) runs a 3x3 conv about 1.5x faster than
  // the GEMM engine for 4x fewer multiplications; here the phases' own GEMMs do 16 of the 3x3
  // conv's 36 per input pixel and channel pair, and win. AVX2 EPYC, N8 channels_last forward,
  // ms, Winograd -> GEMM (torch): C512 -> 256 7x7 38.9 -> 17.1 (15.8), C256 -> 128 14x14 19.5
  // -> 13.2 (12.7), C64 -> 64 14x14 2.85 -> 1.89 (1.71); the fused blocks keep Winograd (C64 ->
  // 32 28x28 3.8 against 5.1, C128 -> 64 28x28 12.7 against 15.4).
  if (conv_algorithm() == ConvAlgorithm::kAuto && winograd_batched_pays(conv, batch, out_channels))
    return false;
  bool ran = false;
  AT_DISPATCH_FLOATING_TYPES(type, "winograd_conv_transpose_phases", [&] {
    const auto w = weight.contiguous();
    const auto w3 = phase_weight(w.const_data_ptr<scalar_t>(), g, s, conv.channels);
    ran = winograd_in_layout(
        x, y, conv, [&](const at::Tensor& in, const at::Tensor& out, const ConvGeometry& c) {
          return winograd_conv(in.const_data_ptr<scalar_t>(), w3.data(), out.data_ptr<scalar_t>(),
                               c, batch, out_channels, {false, false}, WinogradOutput<scalar_t>{s});
        });
  });
  return ran;
}

}  // namespace convpool::cpu
