/* What the node and whole-model programs share: local values, the manifest,
 * values by key, printing keys (ml-spec §7). */
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
