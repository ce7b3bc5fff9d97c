"""Loads N users and G groups into a running SCIM 2.0 server through /Bulk (RFC 7644 §3.7).

Used by scripts/scim-bench to give the peer (scim2-server) the same population as koppel's
endpoint: users user000001… with the same attributes, user i in group ((i-1) % G) + 1.
Standard library only, so it runs in any Python 3.
usage: scim_peer_load.py BASE_URL TOKEN USERS GROUPS
"""

import json
import sys
import urllib.request

BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def bulk(base, token, operations):
    body = json.dumps({"schemas": [BULK], "Operations": operations}).encode()
    req = urllib.request.Request(
        base + "/Bulk",
        data=body,
        method="POST",
        headers={
            "Authorization": "Bearer " + token,
            "Content-Type": "application/scim+json",
        },
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        out = json.load(resp)
    for op in out["Operations"]:
        if not str(op.get("status", "")).startswith("2"):
            sys.exit(f"bulk operation failed: {json.dumps(op)[:500]}")
    return out["Operations"]


def main():
    base, token, users, groups = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ids = {}
    chunk = 1000  # scim2-server's default maxOperations
    for start in range(1, users + 1, chunk):
        ops = []
        for i in range(start, min(start + chunk, users + 1)):
            name = f"user{i:06d}"
            ops.append(
                {
                    "method": "POST",
                    "path": "/Users",
                    "bulkId": str(i),
                    "data": {
                        "schemas": [USER],
                        "userName": name,
                        "externalId": f"E{i:06d}",
                        "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"},
                        "displayName": f"Given{i} Family{i}",
                        "emails": [{"value": f"{name}@example.org", "type": "work", "primary": True}],
                        "active": True,
                    },
                }
            )
        for op in bulk(base, token, ops):
            ids[int(op["bulkId"])] = op["location"].rstrip("/").rsplit("/", 1)[1]
    members = {g: [] for g in range(1, groups + 1)}
    for i in range(1, users + 1):
        members[(i - 1) % groups + 1].append({"value": ids[i]})
    # Keep each request under the 1 MiB maxPayloadSize.
    per_request = max(1, min(chunk, 400_000 // max(1, 60 * (users // max(groups, 1)))))
    names = list(members)
    for start in range(0, len(names), per_request):
        ops = [
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": f"g{g}",
                "data": {"schemas": [GROUP], "displayName": f"group{g:04d}", "members": members[g]},
            }
            for g in names[start : start + per_request]
        ]
        bulk(base, token, ops)
    print(f"loaded {users} users and {groups} groups into {base}")


if __name__ == "__main__":
    main()
