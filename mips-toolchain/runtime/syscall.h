#ifndef OPML_SYSCALL_H
#define OPML_SYSCALL_H
/* Raw Linux o32 syscalls. On error the kernel sets $a3 != 0 and returns the
 * positive errno in $v0; these wrappers return -errno in that case. */

#define SYS_write       4004
#define SYS_brk         4045
#define SYS_mmap        4090
#define SYS_exit_group  4246

/* MIPS Linux values (MAP_ANONYMOUS differs from x86). */
#define PROT_READ       0x1
#define PROT_WRITE      0x2
#define MAP_PRIVATE     0x002
#define MAP_ANONYMOUS   0x800

long sys_write(int fd, const void *buf, unsigned long len);
void sys_exit_group(int code) __attribute__((noreturn));
/* Returns the new program break (Linux semantics: the old break on failure;
 * brk(0) queries the current break). */
unsigned long sys_brk(unsigned long addr);
/* Anonymous mappings only (fd = -1, offset = 0). Returns the address, or a
 * value in [-4095, -1] cast to a pointer on error. */
void *sys_mmap_anon(void *addr, unsigned long len, int prot, int flags);
/* Generic helpers if another syscall is ever needed. */
long syscall3(long n, long a, long b, long c);
long syscall6(long n, long a, long b, long c, long d, long e, long f);

#endif
