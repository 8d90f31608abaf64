/* What the oracle-free kernel programs (ml_kernels.c, ml_kernels_v2.c) share:
 * the xorshift32 stream their Python tests draw too, and the output line
 * "<case> <bytes as hex>" that the tests compare with numpy. */
#ifndef KERNEL_IO_H
#define KERNEL_IO_H

#include "rt.h"

static uint32_t rng_state = 0x2545F491u;

static inline void seed(uint32_t s)
{
    rng_state = s;
}

static inline uint32_t next_u32(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static inline void emit(const char *name, const void *data, uint32_t n)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = data;
    print_str(name);
    print_char(' ');
    for (uint32_t i = 0; i < n; i++) {
        print_char(digits[b[i] >> 4]);
        print_char(digits[b[i] & 15]);
    }
    print_nl();
}

#endif
