#pragma once
// Our own single-threaded GEMM for the CPU engines (float32, float64), selectable in place of
// at::mm. MKL on a CPU that is not Intel's takes a generic AVX2 path (52-65 GFLOP/s per core on an
// AMD EPYC Zen 3); this register-blocked kernel reaches about 70 in steady state. Inside the
// engines, with their packing and gathers, it came out even with MKL on that CPU (resnet18 and
// mobilenet_v2 inference, same process alternating: 0.89-1.07x); on an AVX-512 Zen 4 it wins, and
// "auto" takes it there (packed_gemm_preferred below). Elsewhere at::mm.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace convpool::cpu {

// A matrix operand [rows, cols] with element (i, j) at data[i * row + j * col].
template <typename T>
struct StridedMatrix {
  const T* data;
  int64_t row, col;
};

// c[M, N] (row stride ldc) = a[M, K] x b[K, N], or += when `accumulate`, on the calling thread
// (the engines call it inside at::parallel_for).
template <typename T>
void packed_gemm(StridedMatrix<T> a, StridedMatrix<T> b, T* c, int64_t ldc, int64_t M, int64_t N,
                 int64_t K, bool accumulate);

// A b [K, N] that many products share (the weights), packed once into the panels packed_gemm
// reads, instead of in every call (a transposing copy of the whole weight per pixel block).
template <typename T>
class PackedMatrix {
 public:
  PackedMatrix(StridedMatrix<T> b, int64_t K, int64_t N);
  const T* data() const { return storage_.template const_data_ptr<T>(); }
  int64_t rows, cols;

 private:
  // Uninitialised: the packing writes every element, the padding zeros included (a zero-filled
  // vector cost a serial memset of the whole weight per call, 3 % of a 1x1 C1152 -> 192 7x7 conv).
  // From the output cache (output_memory.h): a weight of megabytes packed into fresh pages on
  // every call paid a page fault per 4 KiB.
  at::Tensor storage_;
};

template <typename T>
void packed_gemm(StridedMatrix<T> a, const PackedMatrix<T>& b, T* c, int64_t ldc, int64_t M,
                 bool accumulate);

// The indirect GEMM: row i of c (c_rows[i], b.cols values) = row i of a (a_rows[i], b.rows
// contiguous values) x b, or += when `accumulate`. The conv by taps (tap_gemm_cpu.h) multiplies
// the rows of a tap's shifted windows where they lie, with no gathered copy.
template <typename T>
void packed_gemm_rows(const T* const* a_rows, T* const* c_rows, int64_t M, const PackedMatrix<T>& b,
                      bool accumulate);

// Which GEMM the engines' float32/float64 products go through: "auto" and "blas" take at::mm,
// "packed" ours (the channels_last forward then packs its weights once per call). Process-wide;
// the tests force each.
void set_gemm_kernel(const std::string& name);
std::string gemm_kernel_name();
bool packed_gemm_selected();
// Whether "blas" is selected: every product through at::mm (and no micro-kernel of ours).
bool blas_gemm_selected();
// Whether an engine's product goes through our GEMM: where "packed" is selected, and under
// "auto" on an AVX-512 CPU that is not Intel's, where MKL runs its generic AVX2 kernel, for the
// forward engines (conv_cl, conv_nchw; also the stride-1 input gradients that run as forwards)
// and the channels_last weight gradient. 1x1 convs on a Zen 4, N8, ours / MKL ms: channels_last
// C96@14->576 0.87 / 1.10, C256@14->1024 3.87 / 4.32, C256@56->64 4.50 / 5.93; NCHW
// C192@7->1152 1.01 / 1.17, C144@56->24 1.09 / 1.36. The NCHW weight gradient keeps MKL (with
// ours NCHW training steps came out 2-4 % slower; channels_last ones 1.5-3 % faster). Weight
// operands (one group's [inner, cols], `weight_bytes`) over 2 MiB keep MKL too: ours streams
// them through once per block of pixels (3x3 stride 2 C256@14->512, 4.7 MB: 7.7 against 5.6 ms).
// On Intel's AVX-512 CPUs "auto" takes ours for channels_last products of at least
// kMinPackedPixelsIntel `pixels` (the GEMM's rows; 0 where the caller's rows are not pixels):
// MKL runs the short reductions of ResNet's 1x1s below its speed, and with fewer rows our blocks
// of 256 leave a core idle where MKL splits the columns too. Xeon, N4 channels_last, MKL / ours
// ms: C64@56->256 1.28 / 1.13, C128@28->512 1.28 / 1.08, C256@56->128 2.31 / 2.09, 3x3 stride 2
// C128@56->128 2.57 / 2.43; C512@7->2048 (196 rows) 1.11 / 1.75, C1024@14->256 1.14 / 1.21.
// From half as many rows for weights up to 256 KiB (MobileNet's 14x14 1x1s at N8, 1568 rows:
// C192->64 0.13 / 0.12, C64->384 0.26 / 0.22, C384->64 0.26 / 0.22; torch 0.12-0.26).
bool packed_gemm_preferred(int64_t weight_bytes, int64_t pixels = 0);
// The input channels from which a channels_last 1x1 conv is our GEMM's product rather than the
// grouped line kernel's, where packed_gemm_preferred holds: 32 (an AVX-512 AMD CPU, measured
// against the lines: 24 -> 144 56x56 stayed with them), 24 on Intel (24 -> 144 56x56 N8: 0.94 ms on
// the lines, 0.64 in the engine; torch 0.60).
int64_t packed_gemm_min_pointwise_channels();
constexpr int64_t kMinPackedPixelsIntel = 2048;
constexpr int64_t kMinPackedPixelsIntelSmallWeight = 1024;
constexpr int64_t kSmallWeightBytes = 256 * 1024;
// Whether the taps engine (tap_gemm_cpu.h), whose indirect rows only our GEMM multiplies, may
// run: under "auto" on every AVX-512 CPU, Intel's too (against MKL's paths on a Xeon, N8 C256
// 28x28 dilation 12 channels_last ms fwd / dx / dw: 14.2 / 16.8 / 16.1 -> 12.4 / 12.2 / 15.0;
// 3x3 stride 2 input gradients C128 -> 256 28x28 4.1 -> 3.1-3.5, C256 -> 512 14x14 5.4 -> 3.8-4.0),
// where "packed" is selected, never under "blas".
bool taps_gemm_allowed();
// The size of a weight operand above which "auto" keeps MKL for products with the pixels as our
// GEMM's columns.
constexpr int64_t kMaxColumnsWeightBytes = int64_t{2} << 20;

// How many columns our GEMM computes for `cols` real ones of `element_size` bytes: whole panels of
// two vectors, a last panel of at most one vector as one vector.
int64_t packed_gemm_columns(int64_t cols, int64_t element_size);

}  // namespace convpool::cpu
