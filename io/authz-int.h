/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The inside of BerthAuthz, shared by the files of io/ that implement it:
 * io/authz.c (the interface and authz-simple), io/authz-list.c (rule lists
 * and authz-list) and io/authz-listfile.c. Nothing outside io/ sees it.
 *
 * Every authorization object's data is a BerthAuthz at the start of the
 * implementation's own struct; ops->is_allowed answers for it and
 * ops->free releases the whole struct.
 */
#ifndef BERTH_IO_AUTHZ_INT_H
#define BERTH_IO_AUTHZ_INT_H

#include "berth/io/authz.h"
#include "berth/util/qmp-command.h"

#include <json-c/json.h>

typedef struct BerthAuthzOps {
    /* identity is never NULL here; any thread. */
    bool (*is_allowed)(BerthAuthz *authz, const char *identity);
    void (*free)(BerthAuthz *authz);
} BerthAuthzOps;

struct BerthAuthz {
    const BerthAuthzOps *ops;
};

/* The QmpObjectType destroy() of every authz type. */
void authz_object_destroy(gpointer data);

/*
 * An authz-list's policy and rules, immutable once built and reference
 * counted, so that authz-listfile can swap in a new set while a check on
 * another thread still reads the old one.
 */
typedef struct AuthzRuleSet AuthzRuleSet;

/*
 * Build a rule set from a default policy (true: allow) and, when has_rules,
 * the rules member as decoded JSON (which must be an array). keyval: the
 * members came from the command line, where QEMU names list elements
 * 'rules.0' (in JSON 'rules[0]'). NULL with errp set to QEMU's text.
 */
AuthzRuleSet *authz_rule_set_new(bool allow, bool has_rules, json_object *rules, bool keyval,
                                 GError **errp);
/*
 * Build a rule set from a whole JSON object as an authz-listfile holds it,
 * each member set as a property of an authz-list, in QEMU's words
 * ("Property 'authz-list.x' not found" for an unknown one).
 */
AuthzRuleSet *authz_rule_set_from_object(json_object *obj, GError **errp);
AuthzRuleSet *authz_rule_set_ref(AuthzRuleSet *set);
void authz_rule_set_unref(AuthzRuleSet *set);
/* The first matching rule's policy, else the default. */
bool authz_rule_set_allows(const AuthzRuleSet *set, const char *identity);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(AuthzRuleSet, authz_rule_set_unref)

extern const QmpObjectType authz_list_type;
extern const QmpObjectType authz_listfile_type;

#endif
