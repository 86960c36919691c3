// The CPU schedule of the shared math in rtm_fused.h: one thread owns a tile (nt = 1), no barriers, and the
// register tiles run along adjacent columns so that they vectorise.

#pragma once

#include "rtm_fused.h"

namespace rtm {

struct CpuPolicy {
    static constexpr int kTileRows = 32;    // token rows per tile (samples per tile = kTileRows / S)
    static constexpr int DW = 16;           // token mix: channels per vector strip
    static constexpr int R = 8;             // channel mix: rows per register tile
    static constexpr int J = 16;            // channel mix: gate/up columns per register tile
    static constexpr int JD = 16;           // channel mix: down columns per register tile
    static constexpr bool kVectorCols = true;
    static constexpr bool kLdgWeights = false;
    static constexpr int kCluster = 1;
    static void sync() {}
    static void cluster_sync() {}
    template <typename T> static T load_peer(const T* p, int) { return *p; }

    template <typename T>
    static void row_norm(T* x, int rows, int ld, const Dims& d, T eps, int, int) {
        for (int r = 0; r < rows; ++r) {
            T* row = x + r * ld;
            T part[kPad] = {};                  // vector lanes; the padded columns are zero
            for (int c = 0; c < d.Dp; c += kPad)
                for (int l = 0; l < kPad; ++l) part[l] += row[c + l] * row[c + l];
            T sum_sq = T(0);
            for (int l = 0; l < kPad; ++l) sum_sq += part[l];
            const T scale = rms_scale(sum_sq, d.D, eps);
            for (int c = 0; c < d.Dp; ++c) row[c] *= scale;
        }
    }
};
static_assert(kPad % CpuPolicy::J == 0 && kPad % CpuPolicy::JD == 0 && kPad % CpuPolicy::DW == 0,
              "the zero padding must cover whole tiles");

}  // namespace rtm
