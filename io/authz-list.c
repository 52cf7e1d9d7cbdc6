/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * authz-list: an ordered list of rules, each an exact string or a glob with
 * a policy, and a default policy for identities that no rule matches. The
 * rules are decoded here, for object-add and for authz-listfile's JSON,
 * with QEMU's messages: a rule's members are named after their element
 * ('rules[0].match' in JSON, 'rules.0.match' on the command line) except
 * in a bad enum value, where QEMU names only the member ('policy').
 */
#include "authz-int.h"

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

/* Indexed as QEMU's QAuthZListPolicy and QAuthZListFormat. */
static const char *const authz_policies[] = { "deny", "allow", NULL };
enum { POLICY_DENY, POLICY_ALLOW };
static const char *const authz_formats[] = { "exact", "glob", NULL };
enum { FORMAT_EXACT, FORMAT_GLOB };

typedef struct {
    char *match;
    bool allow;
    bool glob;
} AuthzRule;

struct AuthzRuleSet {
    gint refcount;
    bool allow;
    size_t nrules;
    AuthzRule rules[];
};

AuthzRuleSet *authz_rule_set_ref(AuthzRuleSet *set)
{
    g_atomic_int_inc(&set->refcount);
    return set;
}

void authz_rule_set_unref(AuthzRuleSet *set)
{
    if (!set || !g_atomic_int_dec_and_test(&set->refcount)) {
        return;
    }
    for (size_t i = 0; i < set->nrules; i++) {
        g_free(set->rules[i].match);
    }
    g_free(set);
}

bool authz_rule_set_allows(const AuthzRuleSet *set, const char *identity)
{
    for (size_t i = 0; i < set->nrules; i++) {
        const AuthzRule *r = &set->rules[i];
        if (r->glob ? g_pattern_match_simple(r->match, identity)
                    : g_str_equal(r->match, identity)) {
            return r->allow;
        }
    }
    return set->allow;
}

/* --- decoding --- */

typedef struct {
    char *match;
    int policy;
    int format;
    bool has_format;
} RuleArgs;

static const ArgSpec rule_members[] = {
    ARG_REQUIRED("match", ARG_STR, RuleArgs, match),
    { .name = "policy", .type = ARG_ENUM, .offset = offsetof(RuleArgs, policy),
      .present_offset = ARG_NO_PRESENCE, .enum_values = authz_policies },
    ARG_ENUM_OPTIONAL("format", authz_formats, RuleArgs, format, has_format),
    ARG_TABLE_END
};
static const ArgSpec *const rule_args[] = { rule_members, NULL };


/*
 * argspec_decode() names a rule's members as if they stood alone; QEMU puts
 * the element's name in front, except in its message for a bad enum value.
 */
static void propagate_in_element(GError **errp, GError *err, const char *element)
{
    const char *quote = strchr(err->message, '\'');
    if (!quote || strstr(err->message, "does not accept value")) {
        g_propagate_error(errp, err);
        return;
    }
    int at = (int) (quote - err->message) + 1;
    g_set_error(errp, err->domain, err->code, "%.*s%s.%s", at, err->message, element,
                err->message + at);
    g_error_free(err);
}

static bool decode_rule(json_object *elem, const char *element, bool keyval, AuthzRule *rule,
                        GError **errp)
{
    if (!json_object_is_type(elem, json_type_object)) {
        qmp_error_setg(errp, "Invalid parameter type for '%s', expected: object", element);
        return false;
    }
    RuleArgs a = { 0 };
    GError *local = NULL;
    if (!argspec_decode(rule_args, elem, keyval, &a, &local)) {
        propagate_in_element(errp, local, element);
        return false;
    }
    rule->match = g_steal_pointer(&a.match);
    rule->allow = a.policy == POLICY_ALLOW;
    rule->glob = a.has_format && a.format == FORMAT_GLOB;
    argspec_clear(rule_args, &a);
    return true;
}

AuthzRuleSet *authz_rule_set_new(bool allow, bool has_rules, json_object *rules, bool keyval,
                                 GError **errp)
{
    if (has_rules && !json_object_is_type(rules, json_type_array)) {
        qmp_error_setg(errp, "Invalid parameter type for 'rules', expected: array");
        return NULL;
    }
    size_t n = has_rules ? json_object_array_length(rules) : 0;
    g_autoptr(AuthzRuleSet) set = g_malloc0(sizeof(AuthzRuleSet) + n * sizeof(AuthzRule));
    set->refcount = 1;
    set->allow = allow;
    for (size_t i = 0; i < n; i++) {
        g_autofree char *element = g_strdup_printf(keyval ? "rules.%zu" : "rules[%zu]", i);
        if (!decode_rule(json_object_array_get_idx(rules, i), element, keyval,
                         &set->rules[i], errp)) {
            return NULL;
        }
        set->nrules++;
    }
    return g_steal_pointer(&set);
}

AuthzRuleSet *authz_rule_set_from_object(json_object *obj, GError **errp)
{
    bool allow = false;
    json_object *rules = NULL;
    bool has_rules = false;

    /* Each member in turn, as QEMU sets them as properties. */
    json_object_object_foreach(obj, key, val) {
        if (g_str_equal(key, "policy")) {
            if (!json_object_is_type(val, json_type_string)) {
                qmp_error_setg(errp, "Invalid parameter type for 'policy', expected: string");
                return NULL;
            }
            const char *s = json_object_get_string(val);
            if (!g_str_equal(s, "allow") && !g_str_equal(s, "deny")) {
                qmp_error_setg(errp, "Parameter 'policy' does not accept value '%s'", s);
                return NULL;
            }
            allow = g_str_equal(s, "allow");
        } else if (g_str_equal(key, "rules")) {
            rules = val;
            has_rules = true;
        } else {
            qmp_error_setg(errp, "Property '%s.%s' not found", BERTH_TYPE_AUTHZ_LIST, key);
            return NULL;
        }
    }
    return authz_rule_set_new(allow, has_rules, rules, false, errp);
}

/* --- the object type --- */

typedef struct {
    BerthAuthz parent;
    AuthzRuleSet *set;
} AuthzList;

static bool authz_list_is_allowed(BerthAuthz *authz, const char *identity)
{
    return authz_rule_set_allows(((AuthzList *) authz)->set, identity);
}

static void authz_list_free(BerthAuthz *authz)
{
    AuthzList *list = (AuthzList *) authz;
    authz_rule_set_unref(list->set);
    g_free(list);
}

static const BerthAuthzOps authz_list_ops = {
    .is_allowed = authz_list_is_allowed,
    .free = authz_list_free,
};

typedef struct {
    int policy;
    json_object *rules;
    bool has_policy, has_rules;
} AuthzListArgs;

static const ArgSpec authz_list_members[] = {
    ARG_ENUM_OPTIONAL("policy", authz_policies, AuthzListArgs, policy, has_policy),
    ARG_OPTIONAL("rules", ARG_ANY, AuthzListArgs, rules, has_rules),
    ARG_TABLE_END
};
static const ArgSpec *const authz_list_args[] = { authz_list_members, NULL };

static gpointer authz_list_create(const char *id, void *opaque, bool keyval, GError **errp)
{
    AuthzListArgs *a = opaque;
    bool allow = a->has_policy && a->policy == POLICY_ALLOW;
    AuthzRuleSet *set = authz_rule_set_new(allow, a->has_rules, a->rules, keyval, errp);
    if (!set) {
        return NULL;
    }
    AuthzList *list = g_new0(AuthzList, 1);
    list->parent.ops = &authz_list_ops;
    list->set = set;
    return &list->parent;
}

const QmpObjectType authz_list_type = {
    .name = BERTH_TYPE_AUTHZ_LIST,
    .args = authz_list_args,
    .args_size = sizeof(AuthzListArgs),
    .create_ex = authz_list_create,
    .destroy = authz_object_destroy,
};
