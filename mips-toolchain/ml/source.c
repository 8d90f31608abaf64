/* Tensor sources: bytes in memory, or a preimage read through the oracle. */
#include "ml.h"
#include "oracle.h"
#include "rt.h"

/* The oracle holds one selected key; re-select only when the source changes. */
static uint8_t selected[ML_KEY_SIZE];
static int have_selected;

static void select_key(const uint8_t key[ML_KEY_SIZE])
{
    if (have_selected && memcmp(selected, key, ML_KEY_SIZE) == 0)
        return;
    oracle_select(key);
    memcpy(selected, key, ML_KEY_SIZE);
    have_selected = 1;
}

void ml_src_key(struct ml_src *s, const uint8_t key[ML_KEY_SIZE])
{
    s->mem = 0;
    s->key = key;
    select_key(key);
    s->size = oracle_length();
}

void ml_src_mem(struct ml_src *s, const void *mem, uint32_t size)
{
    s->mem = mem;
    s->key = 0;
    s->size = size;
}

void ml_src_read(const struct ml_src *s, uint32_t offset, void *buf, uint32_t count)
{
    if (s->mem) {
        memcpy(buf, s->mem + offset, count);
        return;
    }
    select_key(s->key);
    if (oracle_read(offset, buf, count) != count)
        ml_malformed("a tensor shorter than its desc");
}
