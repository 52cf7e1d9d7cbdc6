/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Image format probing, as qemu-nbd does without -f: the formats QEMU
 * recognises by the magic in their first sector, so that a tool can tell a
 * raw image from one it must not export byte for byte, and so that a
 * probed raw image can refuse writes that would make it probe as something
 * else next time (the attack QEMU's warning about probing is about: a guest
 * writing a qcow2 header whose backing file names a host file). Which
 * formats berth can open is the driver list's business (bdrv_driver_exists()),
 * looked up by name at run time. Pure apart from that lookup.
 */
#include "block/block-int.h"

#include <errno.h>
#include <string.h>

typedef struct {
    const char *name;
    size_t offset;
    const char *magic;
    size_t len;
} FormatMagic;

/* qcow2 and qcow share a magic and differ by version: handled below. */
static const FormatMagic magics[] = {
    { "qed", 0, "QED\0", 4 },
    { "vmdk", 0, "KDMV", 4 },
    { "vmdk", 0, "COWD", 4 },
    { "vmdk", 0, "# Disk DescriptorFile", 21 },
    { "vdi", 64, "\x7f\x10\xda\xbe", 4 },
    { "vhdx", 0, "vhdxfile", 8 },
    { "vpc", 0, "conectix", 8 },
    { "luks", 0, "LUKS\xba\xbe", 6 },
    { "parallels", 0, "WithoutFreeSpace", 16 },
    { "parallels", 0, "WithouFreSpacExt", 16 },
    { "bochs", 0, "Bochs Virtual HD Image", 22 },
};

const char *bdrv_probe_format(const uint8_t *buf, size_t len)
{
    if (len >= 8 && memcmp(buf, "QFI\xfb", 4) == 0) {
        uint32_t version = (uint32_t) buf[4] << 24 | (uint32_t) buf[5] << 16 |
                           (uint32_t) buf[6] << 8 | buf[7];
        return version >= 2 ? "qcow2" : "qcow";
    }
    for (size_t i = 0; i < G_N_ELEMENTS(magics); i++) {
        const FormatMagic *m = &magics[i];
        if (len >= m->offset + m->len && memcmp(buf + m->offset, m->magic, m->len) == 0) {
            return m->name;
        }
    }
    return NULL;
}

bool bdrv_driver_exists(const char *name)
{
    for (const BlockDriver *const *d = bdrv_drivers; *d; d++) {
        if (strcmp((*d)->name, name) == 0) {
            return true;
        }
    }
    return false;
}

void bdrv_set_probed_raw(BlockDriverState *bs)
{
    g_return_if_fail(bs != NULL);
    bs->probed_raw = true;
    bs->request_alignment = MAX(bs->request_alignment, BDRV_SECTOR_SIZE);
}

/*
 * A write to the first sector of a probed raw image: it must cover the
 * whole sector (berth does not read-modify-write it), and what it writes
 * must not probe as another format. 0, or a negative errno with *why set.
 */
int bdrv_probed_raw_check_write(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                                const struct iovec *iov, int niov, const char **why)
{
    uint8_t sector[BDRV_SECTOR_SIZE];
    size_t have = 0;

    if (!bs->probed_raw || offset >= BDRV_SECTOR_SIZE) {
        return 0;
    }
    if (offset != 0 || bytes < BDRV_SECTOR_SIZE) {
        *why = "a write to block 0 of a probed raw image must cover the whole first "
               "512 bytes";
        return -EINVAL;
    }
    for (int i = 0; i < niov && have < sizeof(sector); i++) {
        size_t n = MIN(iov[i].iov_len, sizeof(sector) - have);
        memcpy(sector + have, iov[i].iov_base, n);
        have += n;
    }
    if (bdrv_probe_format(sector, have)) {
        *why = "writing an image header to block 0 of a probed raw image is not allowed";
        return -EPERM;
    }
    return 0;
}
