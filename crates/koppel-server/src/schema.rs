//! The SCIM schemas the endpoint serves (RFC 7643 §4 and §8.7): User, the enterprise extension
//! and Group as static data, used for `/Schemas`, case rules, mutability and `returned`.

use serde_json::{Value, json};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const SPC: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::String => "string",
            Ty::Boolean => "boolean",
            Ty::Decimal => "decimal",
            Ty::Integer => "integer",
            Ty::DateTime => "dateTime",
            Ty::Binary => "binary",
            Ty::Reference => "reference",
            Ty::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
}

/// One attribute definition.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub ty: Ty,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    /// uniqueness "server" (only `userName` and `id`); everything else is "none".
    pub unique: bool,
    pub canonical: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub: &'static [Attr],
    pub description: &'static str,
}

/// A plain read-write, single-valued, case-insensitive string, the most common kind.
const fn s(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        ty: Ty::String,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        unique: false,
        canonical: &[],
        reference_types: &[],
        sub: &[],
        description,
    }
}

const fn typed(mut a: Attr, ty: Ty) -> Attr {
    a.ty = ty;
    a
}

const fn ro(mut a: Attr) -> Attr {
    a.mutability = Mutability::ReadOnly;
    a
}

const fn exact(mut a: Attr) -> Attr {
    a.case_exact = true;
    a
}

const fn canon(mut a: Attr, values: &'static [&'static str]) -> Attr {
    a.canonical = values;
    a
}

const fn refs(mut a: Attr, types: &'static [&'static str]) -> Attr {
    a.ty = Ty::Reference;
    a.case_exact = true;
    a.reference_types = types;
    a
}

const fn complex(name: &'static str, description: &'static str, sub: &'static [Attr]) -> Attr {
    let mut a = s(name, description);
    a.ty = Ty::Complex;
    a.sub = sub;
    a
}

const fn multi(mut a: Attr) -> Attr {
    a.multi = true;
    a
}

const PRIMARY: Attr = typed(
    s("primary", "Whether this is the primary value"),
    Ty::Boolean,
);

/// The sub-attributes of a typed multi-valued attribute (emails, phoneNumbers …).
macro_rules! typed_values {
    ($value:expr, $types:expr) => {
        &[
            $value,
            s("display", "A human-readable name"),
            canon(s("type", "The kind of value"), $types),
            PRIMARY,
        ]
    };
}

const META: Attr = ro(complex(
    "meta",
    "Resource metadata",
    &[
        ro(exact(s("resourceType", "The resource type"))),
        ro(typed(
            s("created", "When the resource was added"),
            Ty::DateTime,
        )),
        ro(typed(
            s("lastModified", "When the resource was last changed"),
            Ty::DateTime,
        )),
        ro(refs(s("location", "The URI of the resource"), &["uri"])),
        ro(exact(s("version", "The version (ETag) of the resource"))),
    ],
));

const ID: Attr = {
    let mut a = ro(exact(s("id", "The service provider's identifier")));
    a.returned = Returned::Always;
    a.unique = true;
    a
};

const EXTERNAL_ID: Attr = exact(s("externalId", "The provisioning client's identifier"));

/// The common attributes (RFC 7643 §3.1), not listed in `/Schemas`.
pub const COMMON: &[Attr] = &[ID, EXTERNAL_ID, META];

pub const USER_ATTRS: &[Attr] = &[
    {
        let mut a = s("userName", "The unique identifier for the user");
        a.required = true;
        a.unique = true;
        a
    },
    complex(
        "name",
        "The components of the user's name",
        &[
            s("formatted", "The full name"),
            s("familyName", "The family name"),
            s("givenName", "The given name"),
            s("middleName", "The middle name"),
            s("honorificPrefix", "The honorific prefix"),
            s("honorificSuffix", "The honorific suffix"),
        ],
    ),
    s("displayName", "The name to display"),
    s("nickName", "The casual name"),
    refs(s("profileUrl", "The online profile"), &["external"]),
    s("title", "The title"),
    s("userType", "The relationship to the organisation"),
    s("preferredLanguage", "The preferred language"),
    s("locale", "The default location"),
    s("timezone", "The time zone"),
    typed(s("active", "Whether the user is active"), Ty::Boolean),
    {
        let mut a = s(
            "password",
            "The cleartext password (never returned nor stored)",
        );
        a.mutability = Mutability::WriteOnly;
        a.returned = Returned::Never;
        a
    },
    multi(complex(
        "emails",
        "E-mail addresses",
        typed_values!(s("value", "The e-mail address"), &["work", "home", "other"]),
    )),
    multi(complex(
        "phoneNumbers",
        "Phone numbers",
        typed_values!(
            s("value", "The phone number"),
            &["work", "home", "mobile", "fax", "pager", "other"]
        ),
    )),
    multi(complex(
        "ims",
        "Instant messaging addresses",
        typed_values!(
            s("value", "The address"),
            &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
        ),
    )),
    multi(complex(
        "photos",
        "Photos of the user",
        typed_values!(
            refs(s("value", "The URL of the photo"), &["external"]),
            &["photo", "thumbnail"]
        ),
    )),
    multi(complex(
        "addresses",
        "Physical mailing addresses",
        &[
            s("formatted", "The full address"),
            s("streetAddress", "The street"),
            s("locality", "The city"),
            s("region", "The state or region"),
            s("postalCode", "The postal code"),
            s("country", "The country"),
            canon(s("type", "The kind of address"), &["work", "home", "other"]),
            PRIMARY,
        ],
    )),
    ro(multi(complex(
        "groups",
        "The groups the user belongs to",
        &[
            ro(exact(s("value", "The group's id"))),
            ro(refs(s("$ref", "The group's URI"), &["Group"])),
            ro(s("display", "The group's name")),
            ro(canon(
                s("type", "direct or indirect"),
                &["direct", "indirect"],
            )),
        ],
    ))),
    multi(complex(
        "entitlements",
        "Entitlements",
        typed_values!(s("value", "The entitlement"), &[]),
    )),
    multi(complex(
        "roles",
        "Roles",
        typed_values!(s("value", "The role"), &[]),
    )),
    multi(complex(
        "x509Certificates",
        "Certificates",
        typed_values!(
            exact(typed(s("value", "The DER certificate, base64"), Ty::Binary)),
            &[]
        ),
    )),
];

pub const ENTERPRISE_ATTRS: &[Attr] = &[
    s("employeeNumber", "The employee number"),
    s("costCenter", "The cost center"),
    s("organization", "The organization"),
    s("division", "The division"),
    s("department", "The department"),
    complex(
        "manager",
        "The user's manager",
        &[
            s("value", "The manager's id"),
            refs(s("$ref", "The manager's URI"), &["User"]),
            ro(s("displayName", "The manager's name")),
        ],
    ),
];

const fn immutable(mut a: Attr) -> Attr {
    a.mutability = Mutability::Immutable;
    a
}

const MEMBER_SUBS: &[Attr] = &[
    immutable(exact(s("value", "The member's id"))),
    immutable(refs(s("$ref", "The member's URI"), &["User", "Group"])),
    ro(s("display", "The member's name")),
    immutable(canon(s("type", "User or Group"), &["User", "Group"])),
];

pub const GROUP_ATTRS: &[Attr] = &[
    {
        let mut a = s("displayName", "The group's name");
        a.required = true;
        a
    },
    multi(complex("members", "The members of the group", MEMBER_SUBS)),
];

/// The kind of resource a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn core(self) -> &'static str {
        match self {
            Kind::User => USER,
            Kind::Group => GROUP,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    pub fn core_attrs(self) -> &'static [Attr] {
        match self {
            Kind::User => USER_ATTRS,
            Kind::Group => GROUP_ATTRS,
        }
    }

    /// The extension schemas of this kind.
    pub fn extensions(self) -> &'static [(&'static str, &'static [Attr])] {
        match self {
            Kind::User => &[(ENTERPRISE, ENTERPRISE_ATTRS)],
            Kind::Group => &[],
        }
    }

    /// The attributes of schema `urn` (case-insensitive), or the core ones and the common
    /// ones for `None`.
    pub fn schema_attrs(self, urn: Option<&str>) -> Option<&'static [Attr]> {
        match urn {
            None => Some(self.core_attrs()),
            Some(u) if u.eq_ignore_ascii_case(self.core()) => Some(self.core_attrs()),
            Some(u) => self
                .extensions()
                .iter()
                .find(|(x, _)| x.eq_ignore_ascii_case(u))
                .map(|(_, attrs)| *attrs),
        }
    }

    /// The canonical spelling of extension `urn`, if it is one of this kind's.
    pub fn extension(self, urn: &str) -> Option<&'static str> {
        self.extensions()
            .iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(urn))
            .map(|(x, _)| *x)
    }

    /// The definition of top-level attribute `name` in schema `urn` (common attributes
    /// included for the core schema).
    pub fn attr(self, urn: Option<&str>, name: &str) -> Option<&'static Attr> {
        let core = urn.is_none_or(|u| u.eq_ignore_ascii_case(self.core()));
        let attrs = self.schema_attrs(urn)?;
        find(attrs, name).or_else(|| if core { find(COMMON, name) } else { None })
    }
}

/// The attribute named `name` (case-insensitive) among `attrs`.
pub fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

fn attr_json(a: &Attr) -> Value {
    let mut v = json!({
        "name": a.name,
        "type": a.ty.name(),
        "multiValued": a.multi,
        "description": a.description,
        "required": a.required,
        "mutability": match a.mutability {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        },
        "returned": match a.returned {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
        },
        "uniqueness": if a.unique { "server" } else { "none" },
    });
    if matches!(a.ty, Ty::String | Ty::Reference | Ty::Binary) {
        v["caseExact"] = json!(a.case_exact);
    }
    if !a.canonical.is_empty() {
        v["canonicalValues"] = json!(a.canonical);
    }
    if !a.reference_types.is_empty() {
        v["referenceTypes"] = json!(a.reference_types);
    }
    if !a.sub.is_empty() {
        v["subAttributes"] = Value::Array(a.sub.iter().map(attr_json).collect());
    }
    v
}

/// Every schema as `/Schemas` gives it, without `meta.location` (added per request).
pub fn all_schemas() -> Vec<Value> {
    [
        (USER, "User", "User Account", USER_ATTRS),
        (
            ENTERPRISE,
            "EnterpriseUser",
            "Enterprise User",
            ENTERPRISE_ATTRS,
        ),
        (GROUP, "Group", "Group", GROUP_ATTRS),
    ]
    .into_iter()
    .map(|(id, name, description, attrs)| {
        json!({
            "schemas": [SCHEMA],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
            "meta": { "resourceType": "Schema" },
        })
    })
    .collect()
}

/// Whether `urn` (case-insensitive) is a schema this endpoint knows.
pub fn is_known_urn(urn: &str) -> bool {
    [USER, ENTERPRISE, GROUP]
        .iter()
        .any(|u| u.eq_ignore_ascii_case(urn))
}
