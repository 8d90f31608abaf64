"""Every number of the VM specification (docs/vm-spec.md), under the spec's names."""

# --- Words (§1) ---------------------------------------------------------------------------------
MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF

# --- State (§2) ---------------------------------------------------------------------------------
STATE_SIZE = 226
NUM_REGISTERS = 32

# Status byte of a state hash (§2.2).
STATUS_VALID = 0
STATUS_INVALID = 1
STATUS_PANIC = 2
STATUS_UNFINISHED = 3

# --- Memory (§3) --------------------------------------------------------------------------------
MEM_TREE_DEPTH = 27  # levels from the 32-byte leaves up to the root
LEAF_SIZE = 32
LEAF_SHIFT = 5  # leaf index = addr >> LEAF_SHIFT
PAGE_SIZE = 4096  # the Python memory caches one Merkle subtree per page (not part of the state)
PAGE_SHIFT = 12
PAGE_LEVEL = PAGE_SHIFT - LEAF_SHIFT  # tree level of a page's subtree root (7)
LEAVES_PER_PAGE = PAGE_SIZE // LEAF_SIZE  # 128
MEMORY_PROOF_HEADER_SIZE = LEAF_SIZE + 4  # leaf ‖ zeroMask

# --- Registers (o32) ----------------------------------------------------------------------------
REG_V0 = 2
REG_A0 = 4
REG_A1 = 5
REG_A2 = 6
REG_A3 = 7
REG_SP = 29
REG_RA = 31

# --- Address space (§5.3, §5.4, §6) -------------------------------------------------------------
STACK_TOP = 0x7FFFF000
MMAP_BASE = 0x40000000
BRK_LIMIT = MMAP_BASE
MMAP_LIMIT = 0x70000000
MAP_SHARED = 0x1
MAP_PRIVATE = 0x2
MAP_TYPE = 0xF
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x800

# --- System calls (§5) --------------------------------------------------------------------------
SYS_EXIT = 4001
SYS_WRITE = 4004
SYS_BRK = 4045
SYS_MMAP = 4090
SYS_MUNMAP = 4091
SYS_EXIT_GROUP = 4246
SYS_PREIMAGE_SELECT = 9001  # (keyAddr) §5.5
SYS_PREIMAGE_LENGTH = 9002  # () §5.5
SYS_PREIMAGE_READ = 9003  # (offset, buf, count) §5.5
PREIMAGE_KEY_TYPES = frozenset({1, 2, 3})  # local, keccak, chunk-Merkle (oracle-spec §1)

FD_STDOUT = 1
FD_STDERR = 2

EBADF = 9
ENOMEM = 12
EINVAL = 22
EFBIG = 27
ENOSYS = 89

PREIMAGE_PART_SIZE = 32  # bytes of one oracle part (oracle-spec §2)
MAX_PREIMAGE_LENGTH = 1 << 32  # preimage_length answers EFBIG at or above this (§5.5)

# --- Panics (§4.5, §4.6) ------------------------------------------------------------------------
SIGILL = 4
SIGTRAP = 5
SIGBUS = 7
SIGFPE = 8
PANIC_EXIT_BASE = 128  # exitCode of a panic is 128 + signal
