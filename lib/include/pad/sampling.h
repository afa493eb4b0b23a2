// Choosing one candidate from float32 scores: greedy, or a draw from their softmax.
#ifndef PAD_SAMPLING_H_
#define PAD_SAMPLING_H_

#include <cstdint>

namespace pad {

// One draw from float32 `scores` [n] (host memory): the argmax (lowest index on ties) when temperature is
// 0, else a sample from softmax(scores / temperature) using `uniform`, a number in [0, 1).
int64_t SampleIndex(const float* scores, int64_t n, float temperature, double uniform);

}  // namespace pad

#endif  // PAD_SAMPLING_H_
