// Attention with hand-blocked vector kernels; each returns false (doing nothing) when this CPU or
// head size is not covered, and the caller falls back to the BLAS-based version.
#pragma once

namespace igpt {

bool attentionForwardSimd(float* out, float* att, const float* qkv, int B, int T, int H, int hs,
                          bool causal);
bool attentionBackwardSimd(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                           int T, int H, int hs, bool causal);

}  // namespace igpt
