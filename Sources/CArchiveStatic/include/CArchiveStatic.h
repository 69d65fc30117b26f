/* CArchiveStatic has no API of its own: see pax-filetype.c. */
