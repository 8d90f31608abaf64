/* keccak_vectors: keccak-256 of a fixed byte stream's prefixes, for the
 * VMs, qemu-mipsel and Python to agree on (tests/offchain/test_keccak_c.py).
 *
 * The stream is s[i] = (i * 131 + 7) mod 256. For each length n in LENGTHS
 * the program prints "<n> <64 hex digits of keccak256(s[0 .. n))>\n", hashing
 * once in one call and once fed in pieces of 1, 2, 3, ... bytes; the two must
 * agree (else it prints "mismatch <n>" and exits 1). Then the Merkle parent
 * keccak256(h0 ‖ h1) of the first two hashes as "pair <hex>". Exits 0. */
#include "keccak.h"
#include "rt.h"

static const uint32_t LENGTHS[] = { 0, 1, 31, 32, 33, 64, 135, 136, 137, 271, 272, 273, 1000 };
#define N_LENGTHS (sizeof LENGTHS / sizeof LENGTHS[0])

static uint8_t stream[1000];

static void print_hash(const uint8_t h[KECCAK256_SIZE])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < KECCAK256_SIZE; i++) {
        print_char(digits[h[i] >> 4]);
        print_char(digits[h[i] & 15]);
    }
}

int main(void)
{
    uint8_t first[2][KECCAK256_SIZE];
    for (uint32_t i = 0; i < sizeof stream; i++)
        stream[i] = (uint8_t)(i * 131 + 7);
    for (uint32_t j = 0; j < N_LENGTHS; j++) {
        uint32_t n = LENGTHS[j];
        uint8_t whole[KECCAK256_SIZE], pieces[KECCAK256_SIZE];
        keccak256(stream, n, whole);
        struct keccak256 k;
        keccak256_init(&k);
        for (uint32_t at = 0, piece = 1; at < n; at += piece, piece++)
            keccak256_update(&k, stream + at, piece < n - at ? piece : n - at);
        keccak256_final(&k, pieces);
        if (memcmp(whole, pieces, KECCAK256_SIZE) != 0) {
            print_str("mismatch ");
            print_u32(n);
            print_nl();
            return 1;
        }
        if (j < 2)
            memcpy(first[j], whole, KECCAK256_SIZE);
        print_u32(n);
        print_char(' ');
        print_hash(whole);
        print_nl();
    }
    uint8_t parent[KECCAK256_SIZE];
    keccak256_pair(first[0], first[1], parent);
    print_str("pair ");
    print_hash(parent);
    print_nl();
    return 0;
}
