//! article-wordcount
