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

#define ROTL(v, n) (((v) << (n)) | ((v) >> (64 - (n))))

/* The step mappings unrolled, every rotation by a constant: GCC then lowers
 * each 64-bit lane operation to a few 32-bit instructions, where a loop over
 * tables of offsets needs variable 64-bit shifts and index arithmetic (about
 * 4x the instructions per permutation in the VM). theta; rho and pi into b
 * (lane (x, y) moves to (y, 2x + 3y) rotated by its rho offset); chi; iota. */
static void keccak_f1600(uint64_t a[25])
{
    uint64_t b[25];
    for (int round = 0; round < 24; round++) {
        uint64_t c0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20];
        uint64_t c1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21];
        uint64_t c2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22];
        uint64_t c3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23];
        uint64_t c4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24];
        uint64_t d0 = c4 ^ ROTL(c1, 1);
        uint64_t d1 = c0 ^ ROTL(c2, 1);
        uint64_t d2 = c1 ^ ROTL(c3, 1);
        uint64_t d3 = c2 ^ ROTL(c4, 1);
        uint64_t d4 = c3 ^ ROTL(c0, 1);
        a[0] ^= d0; a[1] ^= d1; a[2] ^= d2; a[3] ^= d3; a[4] ^= d4;
        a[5] ^= d0; a[6] ^= d1; a[7] ^= d2; a[8] ^= d3; a[9] ^= d4;
        a[10] ^= d0; a[11] ^= d1; a[12] ^= d2; a[13] ^= d3; a[14] ^= d4;
        a[15] ^= d0; a[16] ^= d1; a[17] ^= d2; a[18] ^= d3; a[19] ^= d4;
        a[20] ^= d0; a[21] ^= d1; a[22] ^= d2; a[23] ^= d3; a[24] ^= d4;
        b[0] = a[0];
        b[1] = ROTL(a[6], 44);
        b[2] = ROTL(a[12], 43);
        b[3] = ROTL(a[18], 21);
        b[4] = ROTL(a[24], 14);
        b[5] = ROTL(a[3], 28);
        b[6] = ROTL(a[9], 20);
        b[7] = ROTL(a[10], 3);
        b[8] = ROTL(a[16], 45);
        b[9] = ROTL(a[22], 61);
        b[10] = ROTL(a[1], 1);
        b[11] = ROTL(a[7], 6);
        b[12] = ROTL(a[13], 25);
        b[13] = ROTL(a[19], 8);
        b[14] = ROTL(a[20], 18);
        b[15] = ROTL(a[4], 27);
        b[16] = ROTL(a[5], 36);
        b[17] = ROTL(a[11], 10);
        b[18] = ROTL(a[17], 15);
        b[19] = ROTL(a[23], 56);
        b[20] = ROTL(a[2], 62);
        b[21] = ROTL(a[8], 55);
        b[22] = ROTL(a[14], 39);
        b[23] = ROTL(a[15], 41);
        b[24] = ROTL(a[21], 2);
        a[0] = b[0] ^ (~b[1] & b[2]);
        a[1] = b[1] ^ (~b[2] & b[3]);
        a[2] = b[2] ^ (~b[3] & b[4]);
        a[3] = b[3] ^ (~b[4] & b[0]);
        a[4] = b[4] ^ (~b[0] & b[1]);
        a[5] = b[5] ^ (~b[6] & b[7]);
        a[6] = b[6] ^ (~b[7] & b[8]);
        a[7] = b[7] ^ (~b[8] & b[9]);
        a[8] = b[8] ^ (~b[9] & b[5]);
        a[9] = b[9] ^ (~b[5] & b[6]);
        a[10] = b[10] ^ (~b[11] & b[12]);
        a[11] = b[11] ^ (~b[12] & b[13]);
        a[12] = b[12] ^ (~b[13] & b[14]);
        a[13] = b[13] ^ (~b[14] & b[10]);
        a[14] = b[14] ^ (~b[10] & b[11]);
        a[15] = b[15] ^ (~b[16] & b[17]);
        a[16] = b[16] ^ (~b[17] & b[18]);
        a[17] = b[17] ^ (~b[18] & b[19]);
        a[18] = b[18] ^ (~b[19] & b[15]);
        a[19] = b[19] ^ (~b[15] & b[16]);
        a[20] = b[20] ^ (~b[21] & b[22]);
        a[21] = b[21] ^ (~b[22] & b[23]);
        a[22] = b[22] ^ (~b[23] & b[24]);
        a[23] = b[23] ^ (~b[24] & b[20]);
        a[24] = b[24] ^ (~b[20] & b[21]);
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
