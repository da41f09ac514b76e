//! article-thumbnail
