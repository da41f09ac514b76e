//! article-raytrace
