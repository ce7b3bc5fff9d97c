//! The Samba AD domain controller the test script started (filled in next).
