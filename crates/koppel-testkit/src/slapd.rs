//! A throwaway OpenLDAP server per test (filled in next).
