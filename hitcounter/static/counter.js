/* hitcounter snippet placeholder: replaced by the full snippet. */
