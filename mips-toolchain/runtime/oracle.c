#include "oracle.h"
#include "rt.h"

/* preimage_select reads the key as one memory leaf, so it must be 32-byte aligned. */
static uint8_t selected_key[ORACLE_KEY_SIZE] __attribute__((aligned(32)));

static void oracle_fail(long n, long ret) __attribute__((noreturn));
static void oracle_fail(long n, long ret)
{
    print_str_fd(2, "oracle: syscall ");
    /* print_u32 writes to stdout; build the numbers by hand for stderr. */
    char buf[24];
    uint32_t v[2] = { (uint32_t)n, (uint32_t)-ret };
    for (int k = 0; k < 2; k++) {
        int i = 11;
        buf[i] = 0;
        uint32_t x = v[k];
        do {
            buf[--i] = (char)('0' + x % 10);
            x /= 10;
        } while (x);
        print_str_fd(2, buf + i);
        print_str_fd(2, k == 0 ? " failed: errno " : "\n");
    }
    sys_exit_group(ORACLE_EXIT_CODE);
}

static long oracle_syscall(long n, long a, long b, long c)
{
    long ret = syscall3(n, a, b, c);
    if (ret < 0)
        oracle_fail(n, ret);
    return ret;
}

void oracle_select(const uint8_t key[ORACLE_KEY_SIZE])
{
    for (int i = 0; i < ORACLE_KEY_SIZE; i++)
        selected_key[i] = key[i];
    oracle_syscall(SYS_preimage_select, (long)selected_key, 0, 0);
}

uint32_t oracle_length(void)
{
    return (uint32_t)oracle_syscall(SYS_preimage_length, 0, 0, 0);
}

uint32_t oracle_read(uint32_t offset, void *buf, uint32_t count)
{
    uint8_t *p = buf;
    uint32_t done = 0;
    while (done < count) {
        uint32_t n = (uint32_t)oracle_syscall(SYS_preimage_read, (long)(offset + done),
                                              (long)(p + done), (long)(count - done));
        if (n == 0)
            break; /* end of data */
        done += n;
    }
    return done;
}

void oracle_local_key(uint32_t ident, uint8_t out[ORACLE_KEY_SIZE])
{
    for (int i = 0; i < ORACLE_KEY_SIZE; i++)
        out[i] = 0;
    out[0] = ORACLE_KEY_LOCAL;
    out[28] = (uint8_t)(ident >> 24);
    out[29] = (uint8_t)(ident >> 16);
    out[30] = (uint8_t)(ident >> 8);
    out[31] = (uint8_t)ident;
}

uint32_t oracle_stream(const uint8_t key[ORACLE_KEY_SIZE], void *buf, uint32_t buf_size,
                       oracle_consume_fn consume, void *ctx)
{
    oracle_select(key);
    uint32_t length = oracle_length();
    uint32_t offset = 0;
    while (offset < length) {
        uint32_t want = length - offset < buf_size ? length - offset : buf_size;
        uint32_t n = oracle_read(offset, buf, want);
        if (n == 0)
            break; /* cannot happen below the length; do not spin */
        consume(buf, n, ctx);
        offset += n;
    }
    return offset;
}
