#ifndef OPML_KECCAK_H
#define OPML_KECCAK_H
/* keccak-256 as the EVM computes it (Keccak-f[1600], rate 136 bytes,
 * padding 0x01 ... 0x80), integer only. It lets a guest compute the
 * commitments of docs/oracle-spec.md (chunk-Merkle roots and keys) inside
 * the VM, e.g. the key of a node's output tensor (docs/ml-spec.md §7). */
#include <stddef.h>
#include <stdint.h>

#define KECCAK256_SIZE 32
#define KECCAK256_RATE 136

/* An incremental hash: init, any number of updates, final. */
struct keccak256 {
    uint64_t lanes[25];   /* the state A[x + 5y], little-endian lanes */
    uint32_t fill;        /* bytes absorbed into the current block    */
};

void keccak256_init(struct keccak256 *k);
void keccak256_update(struct keccak256 *k, const uint8_t *data, uint32_t len);
void keccak256_final(struct keccak256 *k, uint8_t out[KECCAK256_SIZE]);

/* One-shot: out = keccak256(data[0 .. len)). */
void keccak256(const uint8_t *data, uint32_t len, uint8_t out[KECCAK256_SIZE]);

/* out = keccak256(left ‖ right) for two 32-byte nodes (a Merkle parent). */
void keccak256_pair(const uint8_t left[32], const uint8_t right[32], uint8_t out[KECCAK256_SIZE]);

#endif
