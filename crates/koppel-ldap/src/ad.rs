//! Active Directory specifics: `objectGUID` references, the initial `unicodePwd`, and the
//! ACCOUNTDISABLE bit of `userAccountControl`.

use crate::error::LdapError;

/// `userAccountControl` bit: the account is disabled.
pub const ACCOUNTDISABLE: u32 = 0x2;
/// `userAccountControl` of a normal account, enabled.
pub const NORMAL_ACCOUNT: u32 = 0x200;

/// The canonical string form of an `objectGUID` (the first three fields are little-endian).
pub fn guid_to_string(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// The bytes of a GUID in canonical string form (braces allowed), or `None` if it is not one.
pub fn guid_from_string(s: &str) -> Option<[u8; 16]> {
    let s = s.trim().trim_start_matches('{').trim_end_matches('}');
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    if hex.len() != 32 || groups != [8, 4, 4, 4, 12] {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
    b[4..6].copy_from_slice(&[raw[5], raw[4]]);
    b[6..8].copy_from_slice(&[raw[7], raw[6]]);
    b[8..16].copy_from_slice(&raw[8..16]);
    Some(b)
}

/// An `(objectGUID=…)` assertion value: every byte escaped (RFC 4515).
pub fn guid_filter_value(bytes: &[u8; 16]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// The canonical (lowercase) form of a GUID string, if it is one.
pub fn canonical_guid(s: &str) -> Option<String> {
    guid_from_string(s).and_then(|b| guid_to_string(&b))
}

/// `unicodePwd` as AD wants it: the password in double quotes, UTF-16LE.
pub fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const DIGIT: &[u8] = b"23456789";
const SYMBOL: &[u8] = b"!#%+-.:=?@^_~";
const PASSWORD_LENGTH: usize = 28;

/// A random initial password from the operating system's CSPRNG: 28 characters with at
/// least one upper, lower, digit and symbol (AD's complexity rule). Never logged.
pub fn random_password() -> Result<String, LdapError> {
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SYMBOL].concat();
    loop {
        let mut bytes = [0u8; PASSWORD_LENGTH];
        getrandom::fill(&mut bytes).map_err(|e| LdapError::Protocol {
            message: format!("no randomness for the initial password: {e}"),
        })?;
        // Rejection sampling keeps the choice uniform.
        let limit = 256 - 256 % all.len();
        let chars: Vec<u8> = bytes
            .iter()
            .filter(|b| (**b as usize) < limit)
            .map(|b| all[*b as usize % all.len()])
            .collect();
        if chars.len() < 24 {
            continue;
        }
        let has = |set: &[u8]| chars.iter().any(|c| set.contains(c));
        if has(UPPER) && has(LOWER) && has(DIGIT) && has(SYMBOL) {
            return String::from_utf8(chars).map_err(|e| LdapError::Protocol {
                message: e.to_string(),
            });
        }
    }
}

/// `userAccountControl` with only ACCOUNTDISABLE changed.
pub fn with_enabled(uac: u32, enabled: bool) -> u32 {
    if enabled {
        uac & !ACCOUNTDISABLE
    } else {
        uac | ACCOUNTDISABLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_round_trips_in_canonical_form() {
        let bytes: Vec<u8> = (0u8..16).collect();
        let s = guid_to_string(&bytes).unwrap();
        assert_eq!(s, "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(guid_from_string(&s).unwrap().to_vec(), bytes);
        assert_eq!(
            canonical_guid("{03020100-0504-0706-0809-0A0B0C0D0E0F}").as_deref(),
            Some(s.as_str())
        );
        assert!(guid_from_string("not-a-guid").is_none());
        assert!(guid_from_string("0302010-00504-0706-0809-0a0b0c0d0e0f").is_none());
        assert_eq!(
            guid_filter_value(&guid_from_string(&s).unwrap()),
            "\\00\\01\\02\\03\\04\\05\\06\\07\\08\\09\\0a\\0b\\0c\\0d\\0e\\0f"
        );
    }

    #[test]
    fn passwords_are_long_mixed_and_different() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert!(a.len() >= 24 && a != b);
        assert!(a.chars().any(|c| c.is_ascii_uppercase()));
        assert!(a.chars().any(|c| c.is_ascii_lowercase()));
        assert!(a.chars().any(|c| c.is_ascii_digit()));
        assert!(a.chars().any(|c| !c.is_ascii_alphanumeric()));
    }

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(unicode_pwd("a"), [b'"', 0, b'a', 0, b'"', 0]);
    }

    #[test]
    fn only_the_disable_bit_moves() {
        assert_eq!(with_enabled(0x10202, true), 0x10200);
        assert_eq!(with_enabled(0x10200, false), 0x10202);
        assert_eq!(with_enabled(NORMAL_ACCOUNT, true), 512);
        assert_eq!(with_enabled(NORMAL_ACCOUNT, false), 514);
    }
}
