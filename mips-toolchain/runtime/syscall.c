#include "syscall.h"

/* o32 syscalls may clobber $at, $v1, $t0-$t9, hi and lo. */
#define SYSCALL_CLOBBERS "$1", "$3", "$8", "$9", "$10", "$11", "$12", "$13", \
    "$14", "$15", "$24", "$25", "hi", "lo", "memory"

long syscall3(long n, long a, long b, long c)
{
    register long v0 __asm__("$2") = n;
    register long a0 __asm__("$4") = a;
    register long a1 __asm__("$5") = b;
    register long a2 __asm__("$6") = c;
    register long a3 __asm__("$7");
    __asm__ __volatile__("syscall"
                         : "+r"(v0), "=r"(a3)
                         : "r"(a0), "r"(a1), "r"(a2)
                         : SYSCALL_CLOBBERS);
    return a3 ? -v0 : v0;
}

/* Arguments 5 and 6 go on the stack at 16($sp) and 20($sp), above the
 * 16-byte o32 argument save area; we make a 32-byte frame to keep $sp
 * 8-byte aligned. The stores go in explicit asm so that GCC does not move
 * $sp under us. */
long syscall6(long n, long a, long b, long c, long d, long e, long f)
{
    register long v0 __asm__("$2");
    register long a0 __asm__("$4") = a;
    register long a1 __asm__("$5") = b;
    register long a2 __asm__("$6") = c;
    register long a3 __asm__("$7") = d;
    register long t0 __asm__("$8") = e;
    register long t1 __asm__("$9") = f;
    __asm__ __volatile__(
        ".set push\n\t.set noreorder\n\t"
        "addiu $sp, $sp, -32\n\t"
        "sw    $8, 16($sp)\n\t"
        "sw    $9, 20($sp)\n\t"
        "move  $2, %4\n\t"
        "syscall\n\t"
        "addiu $sp, $sp, 32\n\t"
        ".set pop"
        : "=&r"(v0), "+r"(a3), "+r"(t0), "+r"(t1)
        : "r"(n), "r"(a0), "r"(a1), "r"(a2)
        : "$1", "$3", "$10", "$11", "$12", "$13", "$14", "$15", "$24",
          "$25", "hi", "lo", "memory");
    return a3 ? -v0 : v0;
}

long sys_write(int fd, const void *buf, unsigned long len)
{
    return syscall3(SYS_write, fd, (long)buf, (long)len);
}

void sys_exit_group(int code)
{
    syscall3(SYS_exit_group, code, 0, 0);
    for (;;) {
    }
}

unsigned long sys_brk(unsigned long addr)
{
    return (unsigned long)syscall3(SYS_brk, (long)addr, 0, 0);
}

void *sys_mmap_anon(void *addr, unsigned long len, int prot, int flags)
{
    return (void *)syscall6(SYS_mmap, (long)addr, (long)len, prot,
                            flags | MAP_ANONYMOUS, -1, 0);
}
