/* stream_checksum: streams a preimage through the oracle and prints its checksum.
 *
 * Local value 1 (oracle-spec §1.1) is a 32-byte key, e.g. a tensor's
 * chunk-Merkle key. The program selects that key, streams the whole preimage
 * through a 4 KiB static buffer and prints
 *
 *     checksum 0x<8 hex digits> bytes <decimal length>\n
 *
 * and exits 0. The checksum reads the data as little-endian u32 words w_i
 * (the last one zero-padded), i = 0, 1, ...:
 *
 *     checksum = sum_i ((w_i XOR (i * 0x9E3779B9)) * (2*i + 1))   mod 2^32
 *
 * with every product and sum wrapping modulo 2^32 (uint32_t arithmetic). The
 * numpy equivalent is opml.oracle.checksum.stream_checksum.
 *
 * Exit 1 if local value 1 is not 32 bytes; exit 2 (from the oracle runtime) if
 * an oracle system call fails, e.g. under qemu-mipsel, which has no oracle. */
#include "oracle.h"
#include "rt.h"

#define GOLDEN 0x9E3779B9u

static uint8_t buffer[4096] __attribute__((aligned(32)));
static uint8_t tensor_key[ORACLE_KEY_SIZE] __attribute__((aligned(32)));

struct checksum {
    uint32_t acc;     /* running sum                              */
    uint32_t index;   /* i of the next whole word                 */
    uint32_t partial; /* bytes of an unfinished word, little-endian */
    uint32_t fill;    /* number of bytes in `partial` (0..3)      */
};

static void mix(struct checksum *c, uint32_t w)
{
    c->acc += (w ^ (c->index * GOLDEN)) * (2u * c->index + 1u);
    c->index++;
}

/* Accepts any split of the stream; oracle_stream hands over whole 4 KiB pieces. */
static void consume(const uint8_t *data, uint32_t len, void *ctx)
{
    struct checksum *c = ctx;
    uint32_t i = 0;
    while (c->fill != 0 && i < len) {
        c->partial |= (uint32_t)data[i++] << (8 * c->fill);
        if (++c->fill == 4) {
            mix(c, c->partial);
            c->partial = 0;
            c->fill = 0;
        }
    }
    for (; i + 4 <= len; i += 4) {
        uint32_t w;
        __builtin_memcpy(&w, data + i, 4); /* little-endian load */
        mix(c, w);
    }
    for (; i < len; i++)
        c->partial |= (uint32_t)data[i] << (8 * c->fill++);
}

int main(void)
{
    uint8_t ident_key[ORACLE_KEY_SIZE];
    oracle_local_key(1, ident_key);
    oracle_select(ident_key);
    if (oracle_length() != ORACLE_KEY_SIZE ||
        oracle_read(0, tensor_key, ORACLE_KEY_SIZE) != ORACLE_KEY_SIZE) {
        print_str_fd(2, "stream_checksum: local value 1 is not a 32-byte key\n");
        return 1;
    }

    struct checksum c = { 0, 0, 0, 0 };
    uint32_t n = oracle_stream(tensor_key, buffer, sizeof buffer, consume, &c);
    if (c.fill != 0)
        mix(&c, c.partial); /* the last word, zero-padded */

    print_str("checksum ");
    print_hex32(c.acc);
    print_str(" bytes ");
    print_u32(n);
    print_nl();
    return 0;
}
