/* keccak-256 (see keccak.h). The permutation follows the Keccak reference
 * (FIPS 202 §3.2 step mappings theta, rho, pi, chi, iota over 24 rounds);
 * lanes are uint64_t, which GCC lowers to pairs of 32-bit MIPS registers. */
#include "keccak.h"

static const uint64_t ROUND_CONSTANTS[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL,
    0x8000000080008000ULL, 0x000000000000808bULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800aULL, 0x800000008000000aULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* rho offsets and pi destinations along the lane path starting at (1, 0). */
static const uint8_t RHO[24] = {
    1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14,
    27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44,
};
static const uint8_t PI[24] = {
    10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4,
    15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
};

static uint64_t rotl(uint64_t v, unsigned n)
{
    return (v << n) | (v >> (64 - n));
}

static void keccak_f1600(uint64_t a[25])
{
    for (int round = 0; round < 24; round++) {
        uint64_t c[5], d;
        for (int x = 0; x < 5; x++)
            c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
        for (int x = 0; x < 5; x++) {
            d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
            for (int y = 0; y < 25; y += 5)
                a[y + x] ^= d;
        }
        uint64_t current = a[1];
        for (int i = 0; i < 24; i++) {
            uint64_t next = a[PI[i]];
            a[PI[i]] = rotl(current, RHO[i]);
            current = next;
        }
        for (int y = 0; y < 25; y += 5) {
            uint64_t row[5];
            for (int x = 0; x < 5; x++)
                row[x] = a[y + x];
            for (int x = 0; x < 5; x++)
                a[y + x] = row[x] ^ (~row[(x + 1) % 5] & row[(x + 2) % 5]);
        }
        a[0] ^= ROUND_CONSTANTS[round];
    }
}

/* XORs one byte into the state at byte position `pos` of the block
 * (lanes are little-endian, as in FIPS 202). */
static void absorb_byte(struct keccak256 *k, uint32_t pos, uint8_t byte)
{
    k->lanes[pos >> 3] ^= (uint64_t)byte << (8 * (pos & 7));
}

void keccak256_init(struct keccak256 *k)
{
    for (int i = 0; i < 25; i++)
        k->lanes[i] = 0;
    k->fill = 0;
}

void keccak256_update(struct keccak256 *k, const uint8_t *data, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        absorb_byte(k, k->fill, data[i]);
        if (++k->fill == KECCAK256_RATE) {
            keccak_f1600(k->lanes);
            k->fill = 0;
        }
    }
}

void keccak256_final(struct keccak256 *k, uint8_t out[KECCAK256_SIZE])
{
    absorb_byte(k, k->fill, 0x01);
    absorb_byte(k, KECCAK256_RATE - 1, 0x80);
    keccak_f1600(k->lanes);
    for (uint32_t i = 0; i < KECCAK256_SIZE; i++)
        out[i] = (uint8_t)(k->lanes[i >> 3] >> (8 * (i & 7)));
}

void keccak256(const uint8_t *data, uint32_t len, uint8_t out[KECCAK256_SIZE])
{
    struct keccak256 k;
    keccak256_init(&k);
    keccak256_update(&k, data, len);
    keccak256_final(&k, out);
}

void keccak256_pair(const uint8_t left[32], const uint8_t right[32], uint8_t out[KECCAK256_SIZE])
{
    struct keccak256 k;
    keccak256_init(&k);
    keccak256_update(&k, left, 32);
    keccak256_update(&k, right, 32);
    keccak256_final(&k, out);
}
