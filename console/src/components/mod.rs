//! The console's components, one module per screen area.

pub mod context_panel;
pub mod conversation;
pub mod login;
pub mod routing;
pub mod sidebar;
