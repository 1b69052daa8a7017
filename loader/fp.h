/* Scalar conversions between the float formats checkpoints store and float32, for host code
 * (the loader's HF conversion, reference paths in tests, the forward pass' CPU fallbacks).
 * Round-to-nearest-even on the way down, like MLX's casts. */
#ifndef MOECL_FP_H
#define MOECL_FP_H

#include <stdint.h>

float moecl_bf16_to_f32(uint16_t h);
uint16_t moecl_f32_to_bf16(float f); /* RNE; NaN stays NaN */
float moecl_f16_to_f32(uint16_t h);
uint16_t moecl_f32_to_f16(float f);      /* RNE; overflow to inf */
float moecl_e8m0_to_f32(uint8_t s);      /* 2^(s-127); 255 -> +inf (as MLX's Metal decode) */
float moecl_e4m3_to_f32(uint8_t b);      /* e4m3fn: bias 7, subnormals, max 448, 0x7f/0xff NaN */
float moecl_fp4_to_f32(unsigned nibble); /* E2M1 table: 0, .5, 1, 1.5, 2, 3, 4, 6 and negatives */

#endif
