#ifndef OPML_ORACLE_H
#define OPML_ORACLE_H
/* Guest side of the preimage oracle (docs/oracle-spec.md, docs/vm-spec.md §5.5).
 *
 * A key is 32 bytes in EVM order: key[0] is the most significant byte, the key
 * type (1 local, 2 keccak, 3 chunk-Merkle). The VM keeps one selected key; the
 * data behind it is read with preimage_read, at most one 32-byte part (and one
 * memory leaf) per system call.
 *
 * The oracle is infrastructure: without it a program cannot do its job. So
 * oracle_select, oracle_length and oracle_read do not return errors; on a
 * failed system call (e.g. ENOSYS under qemu-mipsel, which has no oracle, or
 * EFBIG for a preimage of 4 GiB or more) they print
 * "oracle: syscall <n> failed: errno <e>" to stderr and exit with
 * ORACLE_EXIT_CODE (2, a PANIC status in vm-spec §2.2). */
#include <stdint.h>

#define SYS_preimage_select 9001 /* (keyAddr): keyAddr % 32 == 0, else EINVAL */
#define SYS_preimage_length 9002 /* (): length of the selected preimage       */
#define SYS_preimage_read   9003 /* (offset, buf, count): bytes read, 0 = end */

#define ORACLE_KEY_LOCAL        1
#define ORACLE_KEY_KECCAK       2
#define ORACLE_KEY_CHUNK_MERKLE 3

#define ORACLE_KEY_SIZE  32
#define ORACLE_EXIT_CODE 2

/* Selects `key` (any alignment: it is copied to a 32-byte aligned buffer
 * first, as preimage_select requires). */
void oracle_select(const uint8_t key[ORACLE_KEY_SIZE]);

/* Length in bytes of the selected preimage. */
uint32_t oracle_length(void);

/* Reads up to `count` bytes of the selected preimage from byte `offset` into
 * `buf`, looping over preimage_read; returns `count`, or fewer at the end of
 * the data (0 when offset >= length). A 32-byte aligned `buf` and `offset`
 * give 32 bytes per system call. */
uint32_t oracle_read(uint32_t offset, void *buf, uint32_t count);

/* The identifier key withType(ident, 1) by which a program names local value
 * `ident` (oracle-spec §1.1): out[0] = 1, out[28..31] = ident big-endian. */
void oracle_local_key(uint32_t ident, uint8_t out[ORACLE_KEY_SIZE]);

/* Selects `key` and passes the whole preimage, in order, to `consume` in
 * pieces of at most `buf_size` bytes read into `buf` (every piece but the last
 * is exactly `buf_size` bytes). Returns the number of bytes streamed. */
typedef void (*oracle_consume_fn)(const uint8_t *data, uint32_t len, void *ctx);
uint32_t oracle_stream(const uint8_t key[ORACLE_KEY_SIZE], void *buf, uint32_t buf_size,
                       oracle_consume_fn consume, void *ctx);

#endif
