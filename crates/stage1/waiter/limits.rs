/// The most descriptors skiff-wait watches: init's report pipe, a pidfd, a
/// signalfd and two log pipes per app. Given more, it executes stage1 at
/// once; stage1 (crate::rest) stays awake rather than give it more.
/// Included by both (one number for the two programs).
pub const MAX_FDS: usize = 1024;

/// How many times skiff-wait tries to execute stage1 again (1, 2, 4 … 64
/// seconds apart, about 7 minutes in all) before it gives up and ends,
/// which ends the pod (its init dies with it; `skiff gc` collects it).
pub const MAX_EXEC_TRIES: u32 = 10;
