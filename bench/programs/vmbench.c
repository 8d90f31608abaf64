/* Loop-heavy benchmark for bench/vm_speed.py: int8 matrix-vector products with integer
 * requantization (the shape of the VM's real workload), a byte-wise checksum pass over a buffer
 * (loads/stores of every width) and a little 64-bit arithmetic. About 25 M MIPS steps. */
#include "rt.h"

#define N 192
#define ROUNDS 48

static int8_t W[N][N];
static int8_t x[N];
static int32_t acc[N];
static uint8_t scratch[8192];

static uint32_t lcg_state = 12345;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 1103515245u + 12345u;
    return lcg_state >> 8;
}

int main(void)
{
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            W[i][j] = (int8_t)(lcg() & 0xFF);
    for (int j = 0; j < N; j++)
        x[j] = (int8_t)(lcg() & 0x7F);

    uint64_t check = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            int32_t s = 0;
            for (int j = 0; j < N; j++)
                s += (int32_t)W[i][j] * (int32_t)x[j];
            acc[i] = s;
        }
        for (int i = 0; i < N; i++) {
            int32_t v = (acc[i] * 77 + (1 << 14)) >> 15; /* requantize */
            if (v > 127) v = 127;
            if (v < -128) v = -128;
            x[i] = (int8_t)(v > 0 ? v : 0); /* relu */
            check = check * 31 + (uint32_t)acc[i];
        }
        for (int k = 0; k < (int)sizeof scratch; k++)
            scratch[k] = (uint8_t)(scratch[k] * 3 + k + r);
        uint32_t h = 0;
        for (int k = 0; k < (int)sizeof scratch; k += 4)
            h = (h ^ *(uint32_t *)&scratch[k]) * 16777619u;
        check += h / (uint32_t)(r + 1) + (check % 1000003u);
        x[r % N] ^= (int8_t)(h & 0x3F);
    }
    print_str("vmbench check=");
    print_hex64(check);
    print_nl();
    return 0;
}
