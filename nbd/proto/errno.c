/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Between host errno values and the NBD error values the spec allows.  The
 * server's direction depends on the request being answered: the spec asks a
 * server not to send NBD_ENOTSUP except for a WRITE_ZEROES with FAST_ZERO,
 * nor NBD_EOVERFLOW except for a READ with DF, so a block layer's ENOTSUP
 * or EOVERFLOW on any other request becomes NBD_EINVAL (a client that did
 * not ask for either flag is not prepared for them).  Unknown values go to
 * NBD_EIO: to the client they are failed I/O.  The client's direction reads
 * unexpected values as EINVAL, as the spec tells clients to.
 */
#include <errno.h>

#include "nbd/proto/codec.h"

uint32_t nbd_errno(int err, const NBDRequest *req)
{
    if (err < 0) {
        err = -err;
    }
    switch (err) {
    case 0:
        return NBD_SUCCESS;
    case EPERM:
    case EROFS:      /* a read-only backend is the same refusal to the client */
        return NBD_EPERM;
    case EIO:
        return NBD_EIO;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:     /* the spec asks for these two to be folded into ENOSPC */
    case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return req && req->type == NBD_CMD_READ && (req->flags & NBD_CMD_FLAG_DF)
            ? NBD_EOVERFLOW : NBD_EINVAL;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
        return req && req->type == NBD_CMD_WRITE_ZEROES && (req->flags & NBD_CMD_FLAG_FAST_ZERO)
            ? NBD_ENOTSUP : NBD_EINVAL;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

int nbd_error_to_errno(uint32_t nbd_error)
{
    switch (nbd_error) {
    case NBD_SUCCESS:   return 0;
    case NBD_EPERM:     return EPERM;
    case NBD_EIO:       return EIO;
    case NBD_ENOMEM:    return ENOMEM;
    case NBD_EINVAL:    return EINVAL;
    case NBD_ENOSPC:    return ENOSPC;
    case NBD_EOVERFLOW: return EOVERFLOW;
    case NBD_ENOTSUP:   return ENOTSUP;
    case NBD_ESHUTDOWN: return ESHUTDOWN;
    default:
        /* The spec tells clients to read unexpected values as EINVAL. */
        return EINVAL;
    }
}
