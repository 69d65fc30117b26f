/*
 * The static node binary links libarchive statically (scripts/lib/static-build.sh defines
 * SLIPWAY_STATIC_LIBARCHIVE; docs/engineering.md "Start-up"). slipway uses libarchive's tar
 * reader and its pax writer only, but the pax writer calls one helper that lives in the
 * file of archive_write_set_format() (archive_write_set_format.c), whose table of every
 * writer would pull in the 7zip, ISO 9660, xar, zip, warc and mtree writers, and with them
 * zlib, bzip2, nettle and libxml2 (hence ICU). This file gives the pax writer that helper,
 * so none of those are linked. libarchive 3.6 declares it in archive_write_private.h; its
 * job is the error message for an entry whose file type the format cannot hold (slipway
 * never writes one: the tree walker refuses sockets before the writer sees them).
 *
 * In every other build (debug, tests, the dynamically linked release) libarchive is the
 * shared library and this file is empty.
 */
#ifdef SLIPWAY_STATIC_LIBARCHIVE
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>

void __archive_write_entry_filetype_unsupported(struct archive *a, struct archive_entry *entry, const char *format);

void __archive_write_entry_filetype_unsupported(struct archive *a, struct archive_entry *entry, const char *format) {
    const char *kind = "this file type";
    switch (archive_entry_filetype(entry)) {
    case AE_IFSOCK: kind = "sockets"; break;
    case AE_IFCHR: kind = "character devices"; break;
    case AE_IFBLK: kind = "block devices"; break;
    case AE_IFIFO: kind = "named pipes"; break;
    case AE_IFDIR: kind = "directories"; break;
    case AE_IFLNK: kind = "symbolic links"; break;
    default: break;
    }
    archive_set_error(a, EINVAL, "%s: %s format cannot archive %s", archive_entry_pathname(entry), format, kind);
}
#endif
