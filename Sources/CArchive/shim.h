#include <archive.h>
#include <archive_entry.h>
/* The extractor restores extended attributes itself (it writes through openat(2), not
   archive_write_disk), so the xattr calls come in with libarchive's headers. */
#include <sys/xattr.h>
