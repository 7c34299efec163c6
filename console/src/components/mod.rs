//! The console's components, one module per screen area.

pub mod agents;
pub mod cobrowse;
pub mod context_panel;
pub mod conversation;
pub mod gaps;
pub mod login;
pub mod numbers;
pub mod routing;
pub mod sidebar;
