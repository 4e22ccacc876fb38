//! App bits: the local half of pushing an app's files, done like `cf push` does it.
//!
//! 1. [`AppBits::resolve`] turns `params.path` (relative to the put directory) into a directory or a zip archive,
//!    through a glob that must match exactly one entry if need be.
//! 2. [`gather`] lists every entry that `.cfignore` and CF's default ignores keep, hashing each file (SHA-1) on all
//!    cores: the [`Resource`]s to send to `POST /v3/resource_matches` (as [`CcResource`]s, in batches).
//! 3. [`write_zip`] streams the entries CC does not cache into a temp zip ([`PackageZip`]), keeping directory
//!    entries and unix modes, re-checking every file's SHA-1 and compressing on all cores with flat memory.
//!
//! The caller uploads that zip as the `bits` part, and the cached resources (those for which
//! [`Resource::is_cached`] holds) as the `resources` field.

mod archive;
mod cfignore;
mod deflate;
mod digest;
mod error;
mod gather;
mod hash;
mod matching;
mod package;
mod resource;
mod source;
mod zipfile;

pub(crate) use digest::{content_digest, file_digest};
pub use error::BitsError;
pub use gather::gather;
pub(crate) use hash::to_hex;
pub use matching::match_cached;
pub use package::{PackageStats, PackageZip, write_zip};
pub use resource::{Kind, Resource};
pub use source::AppBits;
pub(crate) use source::find_input;
