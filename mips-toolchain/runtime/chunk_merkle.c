/* Streaming chunk-Merkle roots and keys (see chunk_merkle.h). */
#include "chunk_merkle.h"
#include "keccak.h"
#include "rt.h"

void chunk_merkle_init(struct chunk_merkle *m)
{
    m->fill = 0;
    m->chunks = 0;
    m->length = 0;
}

/* Adds leaf number m->chunks: merges it up through every level whose frontier
 * node is its left sibling (the trailing one bits of the leaf index). */
static void add_leaf(struct chunk_merkle *m, const uint8_t leaf[CHUNK_SIZE])
{
    uint8_t node[CHUNK_SIZE];
    memcpy(node, leaf, CHUNK_SIZE);
    uint32_t index = m->chunks;
    uint32_t level = 0;
    while (index & 1) {
        keccak256_pair(m->frontier[level], node, node);
        index >>= 1;
        level++;
    }
    memcpy(m->frontier[level], node, CHUNK_SIZE);
    m->chunks++;
}

void chunk_merkle_update(struct chunk_merkle *m, const uint8_t *data, uint32_t len)
{
    m->length += len;
    while (len > 0) {
        if (m->fill == 0 && len >= CHUNK_SIZE) {
            add_leaf(m, data);
            data += CHUNK_SIZE;
            len -= CHUNK_SIZE;
            continue;
        }
        uint32_t take = CHUNK_SIZE - m->fill < len ? CHUNK_SIZE - m->fill : len;
        memcpy(m->chunk + m->fill, data, take);
        m->fill += take;
        data += take;
        len -= take;
        if (m->fill == CHUNK_SIZE) {
            add_leaf(m, m->chunk);
            m->fill = 0;
        }
    }
}

void chunk_merkle_root(struct chunk_merkle *m, uint8_t root[CHUNK_SIZE])
{
    if (m->fill != 0) {
        memset(m->chunk + m->fill, 0, CHUNK_SIZE - m->fill);
        add_leaf(m, m->chunk);
        m->fill = 0;
    }
    uint32_t n = m->chunks;
    if (n <= 1) { /* depth 0: the only leaf, or Z[0] for empty data */
        if (n == 0)
            memset(root, 0, CHUNK_SIZE);
        else
            memcpy(root, m->frontier[0], CHUNK_SIZE);
        return;
    }
    uint32_t depth = 0;
    while ((1u << depth) < n)
        depth++;
    /* Walk up the right edge. `edge` is the node at this level that covers the
     * leaves past the last whole 2^level group (zero-padded), when there is
     * one; `zero` is Z[level], the root of an all-zero subtree. */
    uint8_t edge[CHUNK_SIZE], zero[CHUNK_SIZE];
    int have_edge = 0;
    memset(zero, 0, CHUNK_SIZE);
    for (uint32_t level = 0; level < depth; level++) {
        if (n & (1u << level)) { /* a whole left node waits at this level */
            keccak256_pair(m->frontier[level], have_edge ? edge : zero, edge);
            have_edge = 1;
        } else if (have_edge) {  /* the edge node is a left child */
            keccak256_pair(edge, zero, edge);
        }
        keccak256_pair(zero, zero, zero);
    }
    memcpy(root, have_edge ? edge : m->frontier[depth], CHUNK_SIZE);
}

void chunk_merkle_key_from_root(const uint8_t root[CHUNK_SIZE], uint32_t length, uint8_t key[CHUNK_SIZE])
{
    uint8_t encoded[2 * CHUNK_SIZE]; /* abi.encode(bytes32 root, uint256 length) */
    memcpy(encoded, root, CHUNK_SIZE);
    memset(encoded + CHUNK_SIZE, 0, CHUNK_SIZE);
    for (int i = 0; i < 4; i++)
        encoded[2 * CHUNK_SIZE - 1 - i] = (uint8_t)(length >> (8 * i));
    keccak256(encoded, sizeof encoded, key);
    key[0] = CHUNK_MERKLE_KEY_TYPE;
}

void chunk_merkle_key(struct chunk_merkle *m, uint8_t key[CHUNK_SIZE])
{
    uint8_t root[CHUNK_SIZE];
    uint32_t length = m->length;
    chunk_merkle_root(m, root);
    chunk_merkle_key_from_root(root, length, key);
}

void chunk_merkle_key_of(const uint8_t *data, uint32_t len, uint8_t key[CHUNK_SIZE])
{
    struct chunk_merkle m;
    chunk_merkle_init(&m);
    chunk_merkle_update(&m, data, len);
    chunk_merkle_key(&m, key);
}
