/* What the node and whole-model programs share: local values, the manifest,
 * values by key, printing keys (ml-spec §7), and the node program's state
 * update (ml-spec §7.1). */
#include "chunk_merkle.h"
#include "keccak.h"
#include "ml.h"
#include "oracle.h"
#include "rt.h"

void ml_local(uint32_t ident, void *out, uint32_t size)
{
    uint8_t key[ORACLE_KEY_SIZE];
    struct ml_src s;
    oracle_local_key(ident, key);
    ml_src_key(&s, key);
    if (s.size != size)
        ml_malformed("a local value of the wrong size");
    ml_src_read(&s, 0, out, size);
}

void ml_open_manifest(struct ml_manifest *m, const uint8_t commitment[ML_KEY_SIZE])
{
    uint8_t header[ML_HEADER_SIZE];
    ml_src_key(&m->src, commitment);
    if (m->src.size < ML_HEADER_SIZE)
        ml_malformed("a manifest shorter than its header");
    ml_src_read(&m->src, 0, header, ML_HEADER_SIZE);
    ml_parse_header(header, &m->header);
    if (m->src.size != ML_HEADER_SIZE + ML_NODE_SIZE * m->header.node_count)
        ml_malformed("a manifest whose size is not 64 + 160·N");
}

void ml_read_node(const struct ml_manifest *m, uint32_t index, struct ml_node *n)
{
    uint8_t record[ML_NODE_SIZE];
    ml_src_read(&m->src, ML_HEADER_SIZE + ML_NODE_SIZE * index, record, ML_NODE_SIZE);
    ml_parse_node(record, n);
}

void ml_value_desc(const struct ml_manifest *m, uint32_t v, struct ml_desc *d)
{
    if (v == 0) {
        *d = m->header.input;
        return;
    }
    struct ml_node producer;
    ml_read_node(m, v - 1, &producer);
    *d = producer.out;
}

uint8_t *ml_read_value(const uint8_t key[ML_KEY_SIZE], const struct ml_desc *d)
{
    struct ml_src s;
    ml_src_key(&s, key);
    if (s.size != ml_nbytes(d))
        ml_malformed("a value whose size does not match its desc");
    uint8_t *data = ml_alloc(s.size);
    ml_src_read(&s, 0, data, s.size);
    return data;
}

void ml_print_key(const uint8_t key[ML_KEY_SIZE])
{
    static const char digits[] = "0123456789abcdef";
    char line[4 + 2 + 2 * ML_KEY_SIZE + 2];
    memcpy(line, "key 0x", 6);
    for (int i = 0; i < ML_KEY_SIZE; i++) {
        line[6 + 2 * i] = digits[key[i] >> 4];
        line[7 + 2 * i] = digits[key[i] & 15];
    }
    line[6 + 2 * ML_KEY_SIZE] = '\n';
    line[7 + 2 * ML_KEY_SIZE] = 0;
    print_str(line);
}

void ml_read_pair(const uint8_t hash[ML_KEY_SIZE], uint8_t pair[2 * ML_KEY_SIZE])
{
    uint8_t key[ML_KEY_SIZE];
    struct ml_src s;
    memcpy(key, hash, ML_KEY_SIZE);
    key[0] = ORACLE_KEY_KECCAK;
    ml_src_key(&s, key);
    if (s.size != 2 * ML_KEY_SIZE)
        ml_malformed("a state tree node whose keccak preimage is not 64 bytes");
    ml_src_read(&s, 0, pair, 2 * ML_KEY_SIZE);
}

/* The chunk-Merkle tree of S_{k−1} has the k + 1 keys as leaves 0 … k and
 * depth d = ⌈log2(k + 1)⌉; S_k's tree adds leaf p = k + 1. Leaf p's left
 * siblings (the levels where p has a one bit) are complete subtrees of keys
 * 0 … k, the same in both trees, and its right siblings lie past the data:
 * Z[level]. So S_k needs only the left siblings, read from the old tree on
 * the walk from its root toward leaf p, which stops at the first level whose
 * node holds no leaf below p. When k + 1 = 2^d (k = 0 included: the root is
 * key 0 itself) p is past the old tree, the walk reads nothing, and the tree
 * grows one level with the old root as the left sibling at level d. */
void ml_next_state(const uint8_t prev[ML_KEY_SIZE], uint32_t k, const uint8_t new_key[ML_KEY_SIZE],
                   uint8_t next[ML_KEY_SIZE])
{
    uint32_t p = k + 1;
    uint8_t pair[2 * ML_KEY_SIZE];
    uint8_t size[ML_KEY_SIZE]; /* abi.encode's uint256: big-endian */
    memset(size, 0, ML_KEY_SIZE);
    for (int i = 0; i < 4; i++)
        size[ML_KEY_SIZE - 1 - i] = (uint8_t)((ML_KEY_SIZE * p) >> (8 * i));
    ml_read_pair(prev, pair); /* abi.encode(root, size) */
    if (memcmp(pair + ML_KEY_SIZE, size, ML_KEY_SIZE) != 0)
        ml_malformed("S_{k-1}'s preimage is not 32·(k + 1) bytes");

    /* k < N (checked by the caller), so both depths stay far below
     * CHUNK_MERKLE_MAX_DEPTH, the size of `left`. */
    uint32_t depth = 0; /* of the old tree */
    while ((1u << depth) < p)
        depth++;
    uint8_t left[CHUNK_MERKLE_MAX_DEPTH + 1][ML_KEY_SIZE]; /* left[level]: p's left sibling */
    uint8_t node[ML_KEY_SIZE];
    memcpy(left[depth], pair, ML_KEY_SIZE);
    memcpy(node, pair, ML_KEY_SIZE);
    /* `node` is p's ancestor at `level`; it holds a leaf below p while p is
     * not a multiple of 2^level. */
    for (uint32_t level = depth; level > 0 && (p & ((1u << level) - 1)) != 0; level--) {
        ml_read_pair(node, pair);
        if ((p >> (level - 1)) & 1) {
            memcpy(left[level - 1], pair, ML_KEY_SIZE);
            memcpy(node, pair + ML_KEY_SIZE, ML_KEY_SIZE);
        } else {
            memcpy(node, pair, ML_KEY_SIZE);
        }
    }

    uint32_t new_depth = 0; /* of S_k's tree: ⌈log2(k + 2)⌉ */
    while ((1u << new_depth) < p + 1)
        new_depth++;
    uint8_t zero[ML_KEY_SIZE]; /* Z[level] */
    memset(zero, 0, ML_KEY_SIZE);
    memcpy(node, new_key, ML_KEY_SIZE);
    for (uint32_t level = 0; level < new_depth; level++) {
        if ((p >> level) & 1)
            keccak256_pair(left[level], node, node);
        else
            keccak256_pair(node, zero, node);
        if (level + 1 < new_depth)
            keccak256_pair(zero, zero, zero);
    }
    chunk_merkle_key_from_root(node, ML_KEY_SIZE * (p + 1), next);
}
