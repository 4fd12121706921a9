#!/usr/bin/env python3
"""Evaluates the account-set ValidatingAdmissionPolicies of a rendered chart with a real CEL
evaluator (cel-python) against sample admission requests: the allowed ones pass every
validation, each refused one fails exactly the validation meant for it, and requests of
other users are not matched at all. Also checks the Role of each entry grants what the
registration API needs and never update or patch.

  vap-check.py RENDERED     (a `helm template` output with charts/tests/values-account-sets.yaml)

Last line: "N passed, M failed".
"""

import copy
import random
import sys

import celpy
import yaml

ENV = celpy.Environment()


def evaluate(expression, activation):
    program = ENV.program(ENV.compile(expression))
    result = program.evaluate({k: celpy.json_to_cel(v) for k, v in activation.items()})
    if isinstance(result, celpy.celtypes.BoolType):
        return bool(result)
    # An evaluation error is a refusal in the API server (failurePolicy: Fail).
    return False


def account(ns, sa, set_name, labels=None, access=None):
    meta_labels = {"mailcred.io/account-set": set_name, "mailcred.io/registered-by": sa}
    if labels is not None:
        meta_labels = labels
    obj = {
        "apiVersion": "mailcred.io/v1alpha1",
        "kind": "MailCredential",
        "metadata": {"name": "acct-1", "namespace": ns},
        "spec": {
            "imap": {"host": "imap.example.com", "port": 993, "tls": "implicit"},
            "username": "user@example.com",
            "access": {"serviceAccounts": [sa] if access is None else access},
        },
    }
    if meta_labels != {}:
        obj["metadata"]["labels"] = meta_labels
    return obj


def request(user, operation, namespace, obj=None, old=None):
    return {
        "request": {
            "operation": operation,
            "namespace": namespace,
            "userInfo": {"username": user},
        },
        "object": obj,
        "oldObject": old,
    }


def cases(ns, sa, set_name):
    """(name, activation, None for allowed, or the message part(s) of the refusing validation(s))."""
    me = f"system:serviceaccount:{ns}:{sa}"
    good = account(ns, sa, set_name)
    no_access = account(ns, sa, set_name)
    del no_access["spec"]["access"]
    yield "create of its set, listing only itself", request(me, "CREATE", ns, good), None
    yield "delete of its set", request(me, "DELETE", ns, None, good), None
    yield "create labelled with another set", request(me, "CREATE", ns, account(ns, sa, "other")), "labelled mailcred.io/account-set"
    yield "create without labels", request(me, "CREATE", ns, account(ns, sa, set_name, labels={})), ("labelled mailcred.io/account-set", "registered-by")
    yield "create registered by another ServiceAccount", request(
        me, "CREATE", ns, account(ns, sa, set_name, labels={"mailcred.io/account-set": set_name, "mailcred.io/registered-by": "someone-else"})
    ), "registered-by"
    yield "create without registered-by", request(
        me, "CREATE", ns, account(ns, sa, set_name, labels={"mailcred.io/account-set": set_name})
    ), "registered-by"
    yield "create listing itself and another app", request(me, "CREATE", ns, account(ns, sa, set_name, access=[sa, "other-app"])), "exactly"
    yield "create listing only another app", request(me, "CREATE", ns, account(ns, sa, set_name, access=["other-app"])), "exactly"
    yield "create listing nobody", request(me, "CREATE", ns, account(ns, sa, set_name, access=[])), "exactly"
    yield "create without spec.access", request(me, "CREATE", ns, no_access), "exactly"
    yield "create in another namespace", request(me, "CREATE", "elsewhere", account("elsewhere", sa, set_name)), "in namespace"
    moved = copy.deepcopy(good)
    moved["spec"]["imap"]["host"] = "imap.attacker.example"
    yield "update (re-point an account)", request(me, "UPDATE", ns, moved, good), "may not update"
    yield "update of its own labels only", request(me, "UPDATE", ns, good, good), "may not update"
    yield "delete of another set", request(me, "DELETE", ns, None, account(ns, "x", "other")), "delete only"
    yield "delete of an unlabelled credential", request(me, "DELETE", ns, None, account(ns, sa, set_name, labels={})), "delete only"


def random_cases(ns, sa, set_name, n=300, seed=13):
    """Random CREATE and DELETE requests: allowed exactly when the stated rule says so."""
    rng = random.Random(seed)
    sets = [set_name, "other", set_name.upper(), set_name + "-x", None]
    sas = [sa, "other-app", sa + "x", None]
    namespaces = [ns, "elsewhere"]
    me = f"system:serviceaccount:{ns}:{sa}"
    for _ in range(n):
        labels = {}
        s, r = rng.choice(sets), rng.choice(sas)
        if s is not None:
            labels["mailcred.io/account-set"] = s
        if r is not None:
            labels["mailcred.io/registered-by"] = r
        if rng.random() < 0.2:
            labels["app"] = "crm"
        access = rng.sample([sa, "other-app", "third"], rng.randint(0, 3))
        target_ns = rng.choice(namespaces)
        obj = account(target_ns, sa, set_name, labels=labels, access=access)
        if rng.random() < 0.5:
            allowed = s == set_name and r == sa and access == [sa] and target_ns == ns
            yield request(me, "CREATE", target_ns, obj), allowed, ("CREATE", s, r, access, target_ns)
        else:
            yield request(me, "DELETE", target_ns, None, obj), s == set_name, ("DELETE", s)


def main():
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    policies = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    bindings = {d["spec"]["policyName"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"}
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "Role" and d["metadata"].get("labels", {}).get("mailcred.io/account-set")}
    passed = failed = 0

    def expect(cond, what):
        nonlocal passed, failed
        if cond:
            passed += 1
            print(f"PASS {what}")
        else:
            failed += 1
            print(f"FAIL {what}")

    expect(len(policies) == 2, f"two policies for two entries (got {len(policies)})")
    for p in policies:
        name = p["metadata"]["name"]
        expect(bindings.get(name, {}).get("spec", {}).get("validationActions") == ["Deny"], f"{name}: bound with Deny")
        expect(p["spec"]["failurePolicy"] == "Fail", f"{name}: failurePolicy Fail")
        set_name = p["metadata"]["labels"]["mailcred.io/account-set"]
        cond = p["spec"]["matchConditions"][0]["expression"]
        user = cond.split("'")[1]
        _, _, ns, sa = user.split(":")
        role = next((r for (rns, _), r in roles.items() if rns == ns), None)
        verbs = sorted(role["rules"][0]["verbs"]) if role else []
        expect(verbs == ["create", "delete", "get", "list", "watch"], f"{name}: Role verbs {verbs}")
        for label, activation, refused_by in cases(ns, sa, set_name):
            results = [(v["message"], evaluate(v["expression"], activation)) for v in p["spec"]["validations"]]
            failing = [m for m, ok in results if not ok]
            expect(evaluate(cond, activation), f"{name}: matches its own user [{label}]")
            if refused_by is None:
                expect(not failing, f"{name}: allowed: {label} {failing}")
            else:
                wanted = (refused_by,) if isinstance(refused_by, str) else refused_by
                matched = len(failing) == len(wanted) and all(any(w in m for m in failing) for w in wanted)
                expect(matched, f"{name}: refused: {label} -> {failing}")
        wrong = [
            what for activation, allowed, what in random_cases(ns, sa, set_name)
            if all(evaluate(v["expression"], activation) for v in p["spec"]["validations"]) != allowed
        ]
        expect(not wrong, f"{name}: 300 random creates/deletes allowed exactly by the rule {wrong[:3]}")
        # Another user (another app, a person with edit rights): this policy does not apply.
        other = request(f"system:serviceaccount:{ns}:other-app", "CREATE", ns, account(ns, "other-app", "other"))
        expect(not evaluate(cond, other), f"{name}: another ServiceAccount is not matched")
        person = request("alice@example.com", "UPDATE", ns, account(ns, sa, set_name), account(ns, sa, set_name))
        expect(not evaluate(cond, person), f"{name}: a person is not matched")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
