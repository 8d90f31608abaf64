#ifndef OPML_CHUNK_MERKLE_H
#define OPML_CHUNK_MERKLE_H
/* Chunk-Merkle keys (docs/oracle-spec.md §1.3) computed in a stream, in the VM.
 *
 * Data is cut into 32-byte chunks (the last one zero-padded); the tree has
 * depth d = ceil(log2(max(n, 1))) over n chunks and 2^d leaves, leaves past n
 * are zero chunks, and inner nodes are keccak256(left ‖ right). The key is
 * withType(keccak256(abi.encode(root, length)), 3).
 *
 * The builder keeps one pending left node per level (the "frontier"), so its
 * memory is fixed whatever the data size; zero subtrees past the data are
 * hashed once per level, never leaf by leaf. Data of 2^32 − 1 bytes or more is
 * outside what the VM can address anyway. */
#include <stdint.h>

#define CHUNK_SIZE 32
#define CHUNK_MERKLE_MAX_DEPTH 27 /* 2^27 chunks = 4 GiB */
#define CHUNK_MERKLE_KEY_TYPE 3

struct chunk_merkle {
    uint8_t frontier[CHUNK_MERKLE_MAX_DEPTH + 1][CHUNK_SIZE]; /* full left nodes, per level */
    uint8_t chunk[CHUNK_SIZE]; /* the chunk being filled                        */
    uint32_t fill;             /* bytes in `chunk`                              */
    uint32_t chunks;           /* whole chunks absorbed                         */
    uint32_t length;           /* bytes absorbed                                */
};

void chunk_merkle_init(struct chunk_merkle *m);
void chunk_merkle_update(struct chunk_merkle *m, const uint8_t *data, uint32_t len);
/* The root of everything absorbed, and the key (root and length). The builder
 * must not be updated afterwards. */
void chunk_merkle_root(struct chunk_merkle *m, uint8_t root[CHUNK_SIZE]);
void chunk_merkle_key(struct chunk_merkle *m, uint8_t key[CHUNK_SIZE]);

/* The key of data of `length` bytes whose tree has root `root`:
 * withType(keccak256(abi.encode(root, length)), 3). */
void chunk_merkle_key_from_root(const uint8_t root[CHUNK_SIZE], uint32_t length, uint8_t key[CHUNK_SIZE]);

/* One-shot: key of data[0 .. len). */
void chunk_merkle_key_of(const uint8_t *data, uint32_t len, uint8_t key[CHUNK_SIZE]);

#endif
