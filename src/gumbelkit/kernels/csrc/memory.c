/* Output buffers: ask for transparent huge pages before the first write.
 *
 * A fresh output of many megabytes is first touched inside a kernel, page by
 * page; with 4 KiB pages every touch is a page fault (microseconds each on a
 * virtual machine: a 16 MB output took longer to fault in than to compute).
 * MADV_HUGEPAGE on the buffer's 2 MiB-aligned interior lets the kernel map it
 * with 2 MiB pages (8 faults instead of 4096). It is advice: where huge pages
 * are off, or on systems without madvise, nothing changes.
 */
#define _DEFAULT_SOURCE
#include <stddef.h>
#include <stdint.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

enum { GK_HUGE_PAGE = 2 << 20 };

void gk_advise_huge_pages(void *data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    uintptr_t lo = ((uintptr_t)data + GK_HUGE_PAGE - 1) & ~(uintptr_t)(GK_HUGE_PAGE - 1);
    uintptr_t hi = ((uintptr_t)data + bytes) & ~(uintptr_t)(GK_HUGE_PAGE - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)data;
    (void)bytes;
#endif
}
