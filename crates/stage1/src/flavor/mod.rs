//! The flavors, on top of everything else in stage1 and never importing
//! one another: `ns` (namespaces), `fly` (chroot, host namespaces), `oci`
//! (a bundle run by crun or runc), `kvm` (a VM with its own kernel).

pub mod fly;
pub mod kvm;
pub mod ns;
pub mod oci;
