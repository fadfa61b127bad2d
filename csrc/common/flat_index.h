#pragma once
// A flat index over [outer, d, h, w] split into its coordinates: how a kernel body finds the
// element its index names (outer: the plane, sample x channel, or a column-matrix row).
#include <cstdint>

#include "host_device.h"

namespace convpool {

struct FlatIndex {
  int64_t outer, d, h, w;
};

// `dims` holds the sizes of d, h and w.
CONVPOOL_HOST_DEVICE FlatIndex split_flat_index(int64_t flat, const int64_t* dims) {
  FlatIndex r;
  r.w = flat % dims[2];
  flat /= dims[2];
  r.h = flat % dims[1];
  flat /= dims[1];
  r.d = flat % dims[0];
  r.outer = flat / dims[0];
  return r;
}

}  // namespace convpool
