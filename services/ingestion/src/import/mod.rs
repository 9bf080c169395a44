//! Bulk import (client side).
