/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "secret" object type and the lookups that its users make. A secret's
 * plain bytes are produced once, at creation, in QEMU's order: read the
 * data or file, then either decrypt it with the key secret (AES-256-CBC,
 * base64 ciphertext when format=base64) or, unencrypted, decode it from
 * base64. QEMU's checks and messages are kept, quirks included: base64 is
 * validated only for its alphabet before GLib decodes it (so a short final
 * group decodes to nothing), and of the PKCS#7 padding only the count in
 * the last byte is checked.
 */
#include "berth/io/secret.h"

#include "berth/util/qmp-command.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdarg.h>
#include <string.h>

#define AES_256_KEY_LEN 32
#define AES_BLOCK_LEN 16

typedef enum {
    SECRET_FORMAT_RAW,
    SECRET_FORMAT_BASE64,
} SecretFormat;

/* The object's data: the plain bytes, NUL-terminated beyond len. */
typedef struct {
    uint8_t *bytes;
    size_t len;
} Secret;

void berth_secret_free(void *data, size_t len)
{
    if (data) {
        explicit_bzero(data, len);
        g_free(data);
    }
}

/* A copy of len bytes plus a NUL. */
static uint8_t *copy_bytes(const uint8_t *src, size_t len)
{
    uint8_t *dst = g_malloc(len + 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
    return dst;
}

/*
 * QEMU's base64 rule: only the alphabet, '=' and newlines, and no NUL
 * within `len` bytes; then GLib decodes. Returns a NUL-terminated buffer.
 */
static uint8_t *base64_decode(const char *in, size_t len, size_t *out_len, GError **errp)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n";
    if (memchr(in, '\0', len)) {
        qmp_error_setg(errp, "Base64 data contains embedded NUL characters");
        return NULL;
    }
    if (strspn(in, alphabet) != len) {
        qmp_error_setg(errp, "Base64 data contains invalid characters");
        return NULL;
    }
    gsize n = 0;
    g_autofree guchar *raw = g_base64_decode(in, &n);
    uint8_t *out = copy_bytes(raw, n);
    explicit_bzero(raw, n);
    *out_len = n;
    return out;
}

static Secret *secret_find(const char *id, GError **errp)
{
    QmpObject *obj = qmp_object_find(id, NULL);
    if (!obj) {
        qmp_error_setg(errp, "No secret with id '%s'", id);
        return NULL;
    }
    if (g_strcmp0(qmp_object_get_type(obj)->name, BERTH_TYPE_SECRET) != 0) {
        qmp_error_setg(errp, "Object with id '%s' is not a secret", id);
        return NULL;
    }
    return qmp_object_get_data(obj);
}

uint8_t *berth_secret_lookup(const char *id, size_t *len, GError **errp)
{
    g_return_val_if_fail(id != NULL && len != NULL, NULL);
    Secret *s = secret_find(id, errp);
    if (!s) {
        return NULL;
    }
    *len = s->len;
    return copy_bytes(s->bytes, s->len);
}

char *berth_secret_lookup_as_utf8(const char *id, GError **errp)
{
    size_t len = 0;
    uint8_t *data = berth_secret_lookup(id, &len, errp);
    if (!data) {
        return NULL;
    }
    if (!g_utf8_validate((const char *) data, (gssize) len, NULL)) {
        berth_secret_free(data, len);
        qmp_error_setg(errp, "Data from secret %s is not valid UTF-8", id);
        return NULL;
    }
    return (char *) data;
}

char *berth_secret_lookup_as_base64(const char *id, GError **errp)
{
    size_t len = 0;
    uint8_t *data = berth_secret_lookup(id, &len, errp);
    if (!data) {
        return NULL;
    }
    char *b64 = g_base64_encode(data, len);
    berth_secret_free(data, len);
    return b64;
}

/* --- creation --- */

typedef struct {
    char *data, *file, *keyid, *iv;
    int format;
    bool loaded;
    bool has_data, has_file, has_keyid, has_iv, has_format, has_loaded;
} SecretArgs;

/* Indexed by SecretFormat. */
static const char *const secret_formats[] = { "raw", "base64", NULL };

/* In QEMU's schema order: SecretCommonProperties, then the secret's own. */
static const ArgSpec secret_members[] = {
    ARG_OPTIONAL("loaded", ARG_BOOL, SecretArgs, loaded, has_loaded),
    ARG_ENUM_OPTIONAL("format", secret_formats, SecretArgs, format, has_format),
    ARG_OPTIONAL("keyid", ARG_STR, SecretArgs, keyid, has_keyid),
    ARG_OPTIONAL("iv", ARG_STR, SecretArgs, iv, has_iv),
    ARG_OPTIONAL("data", ARG_STR, SecretArgs, data, has_data),
    ARG_OPTIONAL("file", ARG_STR, SecretArgs, file, has_file),
    ARG_TABLE_END
};
static const ArgSpec *const secret_args[] = { secret_members, NULL };

/* The undecoded input: the data string or the file's contents. */
static uint8_t *secret_load_input(const SecretArgs *a, size_t *len, GError **errp)
{
    if (a->has_file) {
        if (a->has_data) {
            qmp_error_setg(errp, "'file' and 'data' are mutually exclusive");
            return NULL;
        }
        g_autoptr(GError) local = NULL;
        char *contents = NULL;
        gsize n = 0;
        if (!g_file_get_contents(a->file, &contents, &n, &local)) {
            qmp_error_setg(errp, "Unable to read %s: %s", a->file, local->message);
            return NULL;
        }
        *len = n;
        return (uint8_t *) contents;
    }
    if (a->has_data) {
        *len = strlen(a->data);
        return (uint8_t *) g_strdup(a->data);
    }
    qmp_error_setg(errp, "Either 'file' or 'data' must be provided");
    return NULL;
}

static bool aes_256_cbc_decrypt(const uint8_t *key, const uint8_t *iv, const uint8_t *in,
                                uint8_t *out, size_t len, GError **errp)
{
    gnutls_datum_t key_d = { (unsigned char *) key, AES_256_KEY_LEN };
    gnutls_datum_t iv_d = { (unsigned char *) iv, AES_BLOCK_LEN };
    gnutls_cipher_hd_t hd;
    int rc = gnutls_cipher_init(&hd, GNUTLS_CIPHER_AES_256_CBC, &key_d, &iv_d);
    if (rc < 0) {
        qmp_error_setg(errp, "Cannot initialize cipher: %s", gnutls_strerror(rc));
        return false;
    }
    rc = len ? gnutls_cipher_decrypt2(hd, in, len, out, len) : 0;
    gnutls_cipher_deinit(hd);
    if (rc < 0) {
        qmp_error_setg(errp, "Cannot decrypt data: %s", gnutls_strerror(rc));
        return false;
    }
    return true;
}

/* Decrypt `in` (len bytes, as loaded) with the key secret; *len becomes the
 * plain length. */
static uint8_t *secret_decrypt(const char *id, const SecretArgs *a, const uint8_t *in,
                               size_t *len, GError **errp)
{
    /* QEMU finds the secret being created, still without data. */
    if (g_strcmp0(a->keyid, id) == 0) {
        qmp_error_setg(errp, "Secret with id '%s' has no data", id);
        return NULL;
    }
    size_t key_len = 0;
    uint8_t *key = berth_secret_lookup(a->keyid, &key_len, errp);
    if (!key) {
        return NULL;
    }
    uint8_t *out = NULL, *iv = NULL, *ct = NULL;
    size_t iv_len = 0, ct_len = *len, ct_decoded = 0;
    if (key_len != AES_256_KEY_LEN) {
        qmp_error_setg(errp, "Key should be %d bytes in length", AES_256_KEY_LEN);
        goto out;
    }
    if (!a->has_iv) {
        qmp_error_setg(errp, "IV is required to decrypt secret");
        goto out;
    }
    iv = base64_decode(a->iv, strlen(a->iv), &iv_len, errp);
    if (!iv) {
        goto out;
    }
    if (iv_len != AES_BLOCK_LEN) {
        qmp_error_setg(errp, "IV should be %d bytes in length not %zu", AES_BLOCK_LEN, iv_len);
        goto out;
    }
    if (a->has_format && a->format == SECRET_FORMAT_BASE64) {
        ct = base64_decode((const char *) in, *len, &ct_decoded, errp);
        if (!ct) {
            goto out;
        }
        ct_len = ct_decoded;
    }
    if (ct_len % AES_BLOCK_LEN) {
        qmp_error_setg(errp, "Length %zu must be a multiple of block size %d", ct_len,
                  AES_BLOCK_LEN);
        goto out;
    }
    out = g_malloc0(ct_len + 1);
    if (!aes_256_cbc_decrypt(key, iv, ct ? ct : in, out, ct_len, errp)) {
        g_clear_pointer(&out, g_free);
        goto out;
    }
    if (ct_len) {
        uint8_t pad = out[ct_len - 1];
        if (pad > AES_BLOCK_LEN) {
            qmp_error_setg(errp, "Incorrect number of padding bytes (%d) found on decrypted data",
                      pad);
            berth_secret_free(out, ct_len);
            out = NULL;
            goto out;
        }
        explicit_bzero(out + ct_len - pad, pad);
        ct_len -= pad;
    }
    *len = ct_len;

out:
    berth_secret_free(key, key_len);
    g_free(iv);
    berth_secret_free(ct, ct_decoded);
    return out;
}

static gpointer secret_create(const char *id, void *opaque, GError **errp)
{
    SecretArgs *a = opaque;
    /* QEMU 7.2 schema still lists it, but the property is read-only. */
    if (a->has_loaded) {
        qmp_error_setg(errp, "Property 'secret.loaded' is not writable");
        return NULL;
    }
    size_t len = 0;
    uint8_t *input = secret_load_input(a, &len, errp);
    if (!input) {
        return NULL;
    }
    size_t in_len = len;
    uint8_t *plain;
    if (a->has_keyid) {
        plain = secret_decrypt(id, a, input, &len, errp);
    } else if (a->has_format && a->format == SECRET_FORMAT_BASE64) {
        plain = base64_decode((const char *) input, len, &len, errp);
    } else {
        plain = g_steal_pointer(&input);
    }
    berth_secret_free(input, in_len);
    if (!plain) {
        return NULL;
    }
    Secret *s = g_new0(Secret, 1);
    s->bytes = plain;
    s->len = len;
    return s;
}

static void secret_destroy(gpointer data)
{
    Secret *s = data;
    berth_secret_free(s->bytes, s->len);
    g_free(s);
}

static const QmpObjectType secret_type = {
    .name = BERTH_TYPE_SECRET,
    .args = secret_args,
    .args_size = sizeof(SecretArgs),
    .create = secret_create,
    .destroy = secret_destroy,
};

void berth_secret_object_type_init(void)
{
    qmp_object_type_register(&secret_type);
}
